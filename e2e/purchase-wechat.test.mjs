// A phone inside WeChat (WeChat's user agent): the product page shows the "open in browser"
// guide for Alipay before the form; choosing 微信支付 signs in silently (the simulator plays
// WeChat's OAuth), the order page hands the JSAPI payment to WeixinJSBridge (the simulator's
// stand-in, loaded only by the demo), the buyer confirms in the wallet's sheet and the key
// appears in place, from the signed notification alone.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  PHONE,
  failureShots,
  firstPage,
  launchBrowser,
  recordTimings,
  shot,
  startKami,
  tid,
  waitUntil,
} from './lib/harness.mjs';
import {
  KEY_BUDGET_MS,
  KEY_RE,
  PRODUCT,
  notificationReceivedAt,
  orderStatus,
  watchCheckout,
} from './lib/flows.mjs';

const WECHAT = {
  ...PHONE,
  userAgent: `${PHONE.userAgent} MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN`,
};

describe('phone inside WeChat pays with JSAPI', { timeout: 240_000 }, () => {
  let kami;
  let browser;

  before(async () => {
    kami = await startKami('purchase-wechat');
    browser = await launchBrowser(WECHAT);
  });

  after(async () => {
    await browser?.close();
    await kami?.stop();
  });

  it('OAuth, WeixinJSBridge, the key appears in place', { timeout: 120_000 }, async () => {
    const flow = 'wechat-jsapi';
    await failureShots(browser.context, flow, async () => {
      const page = await firstPage(browser.context);
      await page.goto(`${kami.base}/p/${PRODUCT}`);
      const form = page.locator(`form${tid('order-form')}`);
      await form.waitFor();
      // The guide is there before anything is filled in, above the form.
      const guide = page.locator(tid('inapp-guide'));
      await guide.waitFor();
      assert.equal(await guide.getAttribute('data-app'), 'wechat');
      const guideBox = await guide.boundingBox();
      const formBox = await form.boundingBox();
      assert.ok(guideBox.y < formBox.y, 'the guide is above the form');
      await shot(page, flow, 'product-with-guide');

      await form.locator('input[name="email"]').fill(`${flow}@example.com`);
      await form.locator('input[name="query_password"]').fill(`pw-${flow}-1`);
      await form.locator('input[name="method"][value="wxpay"]').check();
      // Submit: the shop → WeChat's (simulated) OAuth → back to the shop → the order page.
      const seen = [];
      const onNav = (f) => {
        if (f === page.mainFrame()) seen.push(f.url());
      };
      page.on('framenavigated', onNav);
      await Promise.all([
        page.waitForURL(/\/orders\/K\d{26}(#.*)?$/, { waitUntil: 'load' }),
        form.locator(`button${tid('buy')}`).click(),
      ]);
      page.off('framenavigated', onNav);
      const orderNo = new URL(page.url()).pathname.split('/')[2];
      assert.equal(await orderStatus(page), 'pending');
      assert.equal((await page.locator(tid('order-no')).first().innerText()).trim(), orderNo);

      // The stand-in bridge was loaded and asked to pay: its sheet is up.
      const sheet = page.locator(tid('wx-bridge'));
      await sheet.waitFor({ timeout: 15_000 });
      assert.equal(await page.locator(tid('qr')).count(), 0, 'no QR code inside WeChat');
      await shot(page, flow, 'wallet-sheet');

      // Cancel first: nothing happens to the order, the button offers the wallet again.
      await sheet.getByRole('button', { name: 'Cancel' }).click();
      await waitUntil(
        async () =>
          (await page.locator(tid('jsapi-result')).getAttribute('data-result')) ===
          'get_brand_wcpay_request:cancel',
        'the cancel result',
      );
      assert.equal(await orderStatus(page), 'pending');
      await page.locator(tid('jsapi-pay')).click();
      await sheet.waitFor();

      const watch = await watchCheckout(page);
      const clickedAt = Date.now();
      await sheet.getByRole('button', { name: /^Pay$/ }).click();
      const key = page.locator(tid('key')).first();
      await key.waitFor({ state: 'visible', timeout: 20_000 });
      const seenAt = Date.now();
      const keyAt = await watch.sameDocument();
      await waitUntil(async () => (await orderStatus(page)) === 'delivered', 'delivered');
      const keys = (await page.locator(tid('key')).allInnerTexts()).map((k) => k.trim());
      assert.equal(keys.length, 1);
      assert.match(keys[0], KEY_RE);
      await shot(page, flow, 'delivered');

      const notifiedAt = await notificationReceivedAt(kami, orderNo);
      const notificationToKey = (keyAt ?? seenAt) - notifiedAt;
      assert.ok(
        notificationToKey < KEY_BUDGET_MS,
        `notification → key took ${notificationToKey} ms (budget ${KEY_BUDGET_MS} ms)`,
      );
      recordTimings({
        [flow]: {
          method: 'wxpay',
          flavour: 'jsapi',
          pay_click_to_key_ms: (keyAt ?? seenAt) - clickedAt,
          notification_to_key_ms: notificationToKey,
        },
      });
      // The OAuth page was on the way: the simulated WeChat user it gave this browser.
      const cookies = await browser.context.cookies(kami.base);
      assert.ok(
        cookies.some((c) => c.name === 'sim_wx_user'),
        `the WeChat sign-in ran (navigations: ${seen.join(' → ')})`,
      );
    });
  });
});
