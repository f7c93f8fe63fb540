// Language switch: the zh-CN default, English through the catalogue's link (?lang=en, then
// remembered in a cookie on pages opened without it), and back.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DESKTOP,
  failureShots,
  firstPage,
  launchBrowser,
  shot,
  startKami,
  tid,
} from './lib/harness.mjs';
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
  const chooseLanguage = async (page, tag) => {
    await page.goto(`${kami.base}/`);
    await Promise.all([page.waitForEvent('load'), page.locator(`a${tid(`lang-${tag}`)}`).click()]);
  };

  async function switchAndBack() {
    const page = await firstPage(browser.context);
    await page.goto(`${kami.base}/`);
    assert.equal(await lang(page), 'zh-CN', 'default language');
    const zhText = await page.locator('body').innerText();
    assert.match(zhText, /\p{Script=Han}/u, 'Chinese text on the zh-CN catalogue');
    await shot(page, 'language', 'zh-CN-catalogue');
    const zhBuy = await buyLabel(page);

    await chooseLanguage(page, 'en');
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

    await chooseLanguage(page, 'zh-CN');
    assert.equal(await lang(page), 'zh-CN', 'back to Chinese');
    assert.equal(await buyLabel(page), zhBuy, 'Chinese buy button again');
    await shot(page, 'language', 'zh-CN-again');
    await page.close();
  }

  it('switches the page text to English and back', () =>
    failureShots(browser.context, 'language', switchAndBack));
});
