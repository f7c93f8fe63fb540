// Phone buyer (iPhone viewport and user agent): the same four channels, but Alipay and WeChat
// Pay now take their wallet-jump flavours (Alipay wap, WeChat H5), so every method is a
// redirect to the simulator's cashier page.

import { after, before, describe, it } from 'node:test';
import {
  PHONE,
  failureShots,
  firstPage,
  launchBrowser,
  recordTimings,
  startKami,
} from './lib/harness.mjs';
import { buyThroughSimulator } from './lib/flows.mjs';

describe('phone purchase through each simulator channel', { timeout: 240_000 }, () => {
  let kami;
  let browser;
  const timings = {};

  before(async () => {
    kami = await startKami('purchase-phone');
    browser = await launchBrowser(PHONE);
  });

  after(async () => {
    if (Object.keys(timings).length) {
      const all = recordTimings(timings);
      console.log(`timings (ms): ${JSON.stringify(timings)}`);
      console.log(`summary: ${JSON.stringify(all.summary)}`);
    }
    await browser?.close();
    await kami?.stop();
  });

  const simulators = {
    alipay: /alipay\.trade\.wap\.pay/, // wap.pay: the wallet jump
    wxpay: /WeChat Pay — H5 cashier/, // H5
    qqpay: /易支付收银台/,
    sandbox: /Sandbox payment/,
  };
  for (const [method, simulator] of Object.entries(simulators)) {
    const flow = `phone-${method}`;
    it(`${method}: wallet-jump / cashier redirect, the key appears in place`, { timeout: 90_000 }, async () => {
      await failureShots(browser.context, flow, async () => {
        const page = await firstPage(browser.context);
        const r = await buyThroughSimulator(browser.context, page, kami, flow, {
          method,
          expect: 'redirect',
          simulator,
          expectTotal: method === 'alipay' ? '12.30' : undefined,
        });
        timings[flow] = r.timing;
        console.log(
          `${flow}: order ${r.orderNo}; Pay click → key ${r.timing.pay_click_to_key_ms} ms, ` +
            `notification received → key ${r.timing.notification_to_key_ms} ms`,
        );
        await page.close();
      });
    });
  }
});
