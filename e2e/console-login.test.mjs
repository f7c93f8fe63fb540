// The seller console's sign-in, on a desktop and on a phone: the demo's printed password,
// TOTP enrolment on the security page (the secret read off the page, the codes computed here
// like an authenticator app), the recovery codes, then signing in with password + code. A
// wrong code, a replayed code and a used recovery code are refused with their own messages.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DESKTOP,
  PHONE,
  failureShots,
  firstPage,
  launchBrowser,
  startKami,
  tid,
} from './lib/harness.mjs';
import {
  assertNoOverflow,
  base32Decode,
  clickAndLoad,
  consoleGoto,
  freshCode,
  msg,
  signIn,
  signOut,
  stepNow,
  submitCode,
  text,
  totpAt,
  watchPage,
  wrongCode,
  shot,
} from './lib/console.mjs';

for (const [device, profile] of [
  ['desktop', DESKTOP],
  ['phone', PHONE],
]) {
  describe(`console sign-in with a second factor (${device})`, { timeout: 120_000 }, () => {
    const flow = `console-login-${device}`;
    const lang = profile.locale; // zh-CN: the browser's Accept-Language picks the console's
    let kami;
    let browser;
    let page;
    let watch;
    // What the later steps need from the earlier ones.
    let secret = null;
    let lastStep = null;
    let recovery = [];

    before(async () => {
      kami = await startKami(flow);
      browser = await launchBrowser(profile);
      page = await firstPage(browser.context);
      watch = watchPage(page);
    });

    after(async () => {
      await browser?.close();
      await kami?.stop();
    });

    const step = (name, fn) =>
      it(name, () => failureShots(browser.context, flow, fn));

    const codeError = async () => text(page.locator(tid('code-error')));

    step('the console asks for a sign-in; a wrong password is refused', async () => {
      await page.goto(`${kami.base}/admin/orders`);
      const url = new URL(page.url());
      assert.equal(url.pathname, '/admin/login', 'an anonymous visit goes to the login page');
      assert.equal(url.searchParams.get('next'), '/admin/orders', 'and comes back after');
      assert.equal(await page.locator('html').getAttribute('lang'), lang);
      await assertNoOverflow(page, 'the login page');
      await shot(page, flow, 'login');
      watch.assertClean('the login page');

      await signIn(page, kami, { password: 'not-the-password' });
      assert.equal(new URL(page.url()).pathname, '/admin/login', 'still on the login page');
      assert.equal(
        await text(page.locator(tid('login-error'))),
        msg(lang, 'console.error.bad_credentials'),
      );
      assert.equal(await page.locator(tid('console-user')).count(), 0, 'nobody signed in');
      watch.forget(); // the refusal answers 401, which Chromium logs
    });

    step('password sign-in, then TOTP enrolment with recovery codes', async () => {
      assert.equal(await signIn(page, kami), '/admin', 'signed in, on the dashboard');
      assert.equal(await text(page.locator(tid('console-user'))), kami.consoleLogin.user);
      watch.assertClean('the dashboard');

      await consoleGoto(page, kami, '/admin/security');
      await page.locator(tid('totp-off')).waitFor();
      await clickAndLoad(page, page.locator(`button${tid('totp-begin')}`));
      const enrol = page.locator(tid('totp-enrol'));
      await enrol.waitFor();
      assert.equal(
        await page.locator(`${tid('totp-qr')} svg`).count(),
        1,
        'the enrolment page shows a QR code',
      );
      const shown = await text(page.locator(tid('totp-secret')));
      secret = base32Decode(shown);
      assert.equal(secret.length, 20, `a 160-bit secret (${shown})`);
      await assertNoOverflow(page, 'the enrolment page');
      await shot(page, flow, 'totp-enrol');

      // A wrong code does not turn the factor on.
      const confirm = async (code) => {
        await page.locator('form[action="/admin/security/totp/confirm"] input[name="code"]').fill(code);
        await clickAndLoad(page, page.locator(`button${tid('totp-confirm')}`));
      };
      await confirm(wrongCode(secret));
      assert.equal(
        await text(page.locator(tid('enrol-error'))),
        msg(lang, 'console.error.bad_code'),
      );
      assert.equal(
        await text(page.locator(tid('totp-secret'))),
        shown,
        'the same secret is offered again',
      );
      watch.forget();

      lastStep = stepNow();
      await confirm(totpAt(secret, lastStep));
      await page.locator(tid('recovery-codes')).waitFor();
      recovery = (await page.locator(tid('recovery-code')).allInnerTexts()).map((c) => c.trim());
      assert.equal(recovery.length, 10, 'ten recovery codes');
      assert.equal(new Set(recovery).size, 10, 'all different');
      for (const c of recovery) assert.match(c, /^[A-Za-z0-9-]{8,}$/, `a recovery code: ${c}`);
      await assertNoOverflow(page, 'the recovery codes page');
      await shot(page, flow, 'recovery-codes');

      await clickAndLoad(page, page.locator(`${tid('recovery-codes')} a[href="/admin/security"]`));
      assert.equal(
        await text(page.locator(tid('totp-on'))),
        msg(lang, 'console.security.totp_on', { n: 10 }),
      );
      await shot(page, flow, 'security-totp-on');
      watch.assertClean('the security pages');
      await signOut(page);
      await page.goto(`${kami.base}/admin`);
      assert.equal(new URL(page.url()).pathname, '/admin/login', 'signed out');
    });

    step('the password alone is not enough; a wrong code is refused, the right one signs in', async () => {
      assert.ok(secret, 'enrolled in the previous step');
      assert.equal(await signIn(page, kami), '/admin/login/code', 'the code page follows');
      await shot(page, flow, 'code');
      // Half signed in opens nothing.
      await page.goto(`${kami.base}/admin/orders`);
      assert.notEqual(new URL(page.url()).pathname, '/admin/orders', 'no console before the code');
      await page.goto(`${kami.base}/admin/login/code`);

      await submitCode(page, wrongCode(secret));
      assert.equal(new URL(page.url()).pathname, '/admin/login/code', 'still asking for the code');
      assert.equal(await codeError(), msg(lang, 'console.error.bad_code'));
      await shot(page, flow, 'code-wrong');
      watch.forget();

      const fresh = await freshCode(secret, lastStep);
      await submitCode(page, fresh.code);
      lastStep = fresh.step;
      assert.equal(new URL(page.url()).pathname, '/admin', 'signed in with password + code');
      assert.equal(await text(page.locator(tid('console-user'))), kami.consoleLogin.user);
      watch.assertClean('the dashboard after the code');
      await signOut(page);
    });

    step('a replayed code is refused; a recovery code signs in once', async () => {
      assert.equal(await signIn(page, kami), '/admin/login/code');
      // The code that just signed in, again (as if read over the seller's shoulder).
      await submitCode(page, totpAt(secret, lastStep));
      assert.equal(new URL(page.url()).pathname, '/admin/login/code', 'the replay is refused');
      assert.equal(await codeError(), msg(lang, 'console.error.code_used'));
      await shot(page, flow, 'code-replayed');
      watch.forget();

      await submitCode(page, recovery[0]);
      assert.equal(new URL(page.url()).pathname, '/admin', 'a recovery code signs in');
      await consoleGoto(page, kami, '/admin/security');
      assert.equal(
        await text(page.locator(tid('totp-on'))),
        msg(lang, 'console.security.totp_on', { n: 9 }),
        'one recovery code fewer',
      );
      await signOut(page);

      assert.equal(await signIn(page, kami), '/admin/login/code');
      await submitCode(page, recovery[0]);
      assert.equal(new URL(page.url()).pathname, '/admin/login/code', 'a used recovery code is refused');
      assert.ok(
        [msg(lang, 'console.error.bad_code'), msg(lang, 'console.error.code_used')].includes(
          await codeError(),
        ),
        'refused as a wrong or used code',
      );
      watch.forget();
      await submitCode(page, recovery[1]);
      assert.equal(new URL(page.url()).pathname, '/admin', 'the next recovery code works');
      watch.assertClean('the console after a recovery code');
    });
  });
}
