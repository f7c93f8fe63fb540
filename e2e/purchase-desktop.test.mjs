// Desktop buyer: one purchase through every demo payment channel's simulator. Alipay and WeChat
// Pay show a QR code (the demo's sim-link is the phone that scans it), Epay, Stripe and the
// sandbox redirect to their cashier. The key must appear on the checkout page without a reload.

import { after, before, describe, it } from 'node:test';
import {
  DESKTOP,
  failureShots,
  firstPage,
  launchBrowser,
  recordTimings,
  startKami,
} from './lib/harness.mjs';
import { buyThroughSimulator, checkCopyAndDownload } from './lib/flows.mjs';

describe('desktop purchase through each simulator channel', { timeout: 240_000 }, () => {
  let kami;
  let browser;
  const timings = {};

  before(async () => {
    kami = await startKami('purchase-desktop');
    browser = await launchBrowser(DESKTOP);
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

  const cases = [
    // 当面付 precreate QR; its text is the simulator's payer page.
    { flow: 'desktop-alipay', method: 'alipay', expect: 'qr', simulator: /alipay\.trade\.precreate/ },
    // Native weixin:// code; the demo links its scan page.
    { flow: 'desktop-wxpay', method: 'wxpay', expect: 'qr', simulator: /WeChat Pay — scan/ },
    // 易支付 submit.php page jump to the cashier.
    { flow: 'desktop-qqpay', method: 'qqpay', expect: 'redirect', simulator: /易支付收银台[\s\S]*qqpay/ },
    // Stripe Checkout: a redirect to the hosted page; delivery only from the signed webhook.
    { flow: 'desktop-card', method: 'card', expect: 'redirect', simulator: /Checkout[\s\S]*CNY/ },
    // epusdt: a redirect to the gateway's cashier (coin amount, receiving address); delivery
    // only from the MD5-signed notification.
    { flow: 'desktop-usdt', method: 'usdt', expect: 'redirect', simulator: /USDT 收银台[\s\S]*USDT[\s\S]*收款地址/ },
    // Five keys at the 5+ tier price (¥11.00 each): the live total and five distinct keys.
    {
      flow: 'desktop-sandbox',
      method: 'sandbox',
      expect: 'redirect',
      quantity: 5,
      expectTotal: '55.00',
      simulator: /Sandbox payment[\s\S]*55\.00 CNY/,
    },
  ];
  for (const c of cases) {
    it(`${c.method}: pay in the simulator, the key appears in place`, { timeout: 90_000 }, async () => {
      await failureShots(browser.context, c.flow, async () => {
        const page = await firstPage(browser.context);
        const r = await buyThroughSimulator(browser.context, page, kami, c.flow, c);
        timings[c.flow] = r.timing;
        console.log(
          `${c.flow}: order ${r.orderNo}; Pay click → key ${r.timing.pay_click_to_key_ms} ms, ` +
            `notification received → key ${r.timing.notification_to_key_ms} ms`,
        );
        if (c.method === 'sandbox') {
          await checkCopyAndDownload(browser.context, page, kami.base, r.keys);
        }
        await page.close();
      });
    });
  }
});
