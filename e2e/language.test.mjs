// Language switch: the zh-CN default, ?lang=en through the catalogue's link (remembered in a
// cookie on the next pages), and back.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DESKTOP, firstPage, launchBrowser, shot, startKami, tid } from './lib/harness.mjs';
import { PRODUCT } from './lib/flows.mjs';

describe('language switch', { timeout: 120_000 }, () => {
  let kami;
  let browser;

  before(async () => {
    kami = await startKami('language');
    browser = await launchBrowser({ ...DESKTOP, locale: 'zh-CN' });
  });

  after(async () => {
    await browser?.close();
    await kami?.stop();
  });

  const lang = (page) => page.locator('html').getAttribute('lang');
  const buyLabel = async (page) => {
    await page.goto(`${kami.base}/p/${PRODUCT}`);
    return (await page.locator(`button${tid('buy')}`).innerText()).trim();
  };

  it('switches the page text to English and back', async () => {
    const page = await firstPage(browser.context);
    await page.goto(`${kami.base}/`);
    assert.equal(await lang(page), 'zh-CN', 'default language');
    const zhText = await page.locator('body').innerText();
    assert.match(zhText, /\p{Script=Han}/u, 'Chinese text on the zh-CN catalogue');
    await shot(page, 'language', 'zh-CN-catalogue');
    const zhBuy = await buyLabel(page);

    await page.goto(`${kami.base}/`);
    await Promise.all([page.waitForEvent('load'), page.locator(`a${tid('lang-en')}`).click()]);
    assert.equal(await lang(page), 'en', 'html[lang] after choosing English');
    const enText = await page.locator('body').innerText();
    assert.notEqual(enText, zhText, 'the catalogue text changed');
    await shot(page, 'language', 'en-catalogue');

    // The choice sticks (cookie) on pages opened without ?lang.
    const enBuy = await buyLabel(page);
    assert.equal(await lang(page), 'en', 'product page stays English');
    assert.notEqual(enBuy, zhBuy, 'the buy button is translated');
    assert.doesNotMatch(enBuy, /\p{Script=Han}/u, 'English buy button');
    await shot(page, 'language', 'en-product');

    await page.goto(`${kami.base}/`);
    await Promise.all([page.waitForEvent('load'), page.locator(`a${tid('lang-zh-CN')}`).click()]);
    assert.equal(await lang(page), 'zh-CN', 'back to Chinese');
    assert.equal(await buyLabel(page), zhBuy, 'Chinese buy button again');
    await shot(page, 'language', 'zh-CN-again');
    await page.close();
  });
});
