// Shared harness of the browser end-to-end tests: a `kami serve --demo` process on a fresh
// SQLite database and port, headless Debian Chromium driven by playwright-core (each browser
// with a fresh user-data-dir), numbered screenshots and the timings file.
//
// Environment:
//   KAMI_BIN         the kami binary (required; the Rust wrapper passes CARGO_BIN_EXE_kami)
//   CHROMIUM         the Chromium executable (default /usr/bin/chromium)
//   KAMI_E2E_SHOTS   screenshot folder (default target/e2e-screenshots of the workspace)

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, devices } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKSPACE = path.resolve(here, '..', '..');
export const SHOTS = path.resolve(
  process.env.KAMI_E2E_SHOTS || path.join(WORKSPACE, 'target', 'e2e-screenshots'),
);
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// The machines have no outside network: nothing may try to reach it. `--headless` is added by
// playwright itself (`headless: true`), `--user-data-dir` by launchPersistentContext.
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const DESKTOP = {
  viewport: { width: 1280, height: 900 },
  locale: 'zh-CN',
};

// A phone: iPhone 13's viewport, pixel ratio, touch and user agent (Chromium renders it; the
// user agent is what makes the shop ask Alipay / WeChat Pay for their wallet-jump flavours).
const iphone = devices['iPhone 13'];
export const PHONE = {
  viewport: iphone.viewport,
  screen: iphone.screen,
  deviceScaleFactor: iphone.deviceScaleFactor,
  isMobile: true,
  hasTouch: true,
  userAgent: iphone.userAgent,
  locale: 'zh-CN',
};

// Processes and folders to clean up however this process ends.
const children = new Set();
const tempDirs = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => process.exit(130));
}

function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

function removeTempDir(d) {
  fs.rmSync(d, { recursive: true, force: true });
  tempDirs.delete(d);
}

// ---------------------------------------------------------------------------------------------
// The kami server

/**
 * Start `KAMI_BIN serve --demo` on 127.0.0.1:0 with a fresh SQLite database; resolves once
 * `/healthz` answers. Its output goes to `<shots>/kami-<name>.log`.
 */
export async function startKami(name, { env = {} } = {}) {
  const bin = process.env.KAMI_BIN && path.resolve(process.env.KAMI_BIN);
  if (!bin) throw new Error('KAMI_BIN is not set (path to the kami binary, e.g. target/debug/kami)');
  if (!fs.existsSync(bin)) throw new Error(`KAMI_BIN=${bin} does not exist (cargo build -p kami)`);
  prepareShots();
  const dir = tempDir('kami-e2e-');
  const config = path.join(dir, 'kami.toml');
  // JSON strings are valid TOML basic strings.
  fs.writeFileSync(
    config,
    [
      '[server]',
      'listen = "127.0.0.1:0"',
      `data_dir = ${JSON.stringify(path.join(dir, 'data'))}`,
      '',
      '[database]',
      `url = ${JSON.stringify(`sqlite://${path.join(dir, 'kami.db')}`)}`,
      '',
      // Every browser of the suite is 127.0.0.1: per-client limits are the abuse suite's.
      '[risk]',
      'max_pending_orders_per_ip = 1000',
      'max_pending_orders_per_email = 1000',
      'orders_per_minute_per_ip = 1000',
      'password_checks_per_minute_per_ip = 1000',
      'password_hashes_at_once_per_ip = 1000',
      '',
    ].join('\n'),
  );
  const logPath = path.join(SHOTS, `kami-${name}.log`);
  const log = fs.createWriteStream(logPath);
  const child = spawn(bin, ['serve', '--demo', '--config', config], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.add(child);
  let exited = null;
  const exit = new Promise((resolve) => {
    const done = (how) => {
      if (exited) return;
      exited = how;
      children.delete(child);
      resolve(exited);
    };
    child.once('exit', (code, signal) => done({ code, signal }));
    child.once('error', (e) => done({ error: e.message })); // e.g. spawn ENOENT
  });
  const tail = [];
  let base = null;
  let adminToken = null;
  let consoleLogin = null;
  // Every line so far (bounded), for `waitForLine`; and the waiters on lines still to come.
  const lines = [];
  const lineWaiters = new Set();
  const onLine = (line) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    lines.push(line);
    if (lines.length > 50_000) lines.splice(0, 10_000);
    for (const w of lineWaiters) w(line);
    // The demo's console sign-in, on stderr: "demo console: URL/admin/login  user: U  password: P".
    const c = /^demo console: (\S+)\s+user: (\S+)\s+password: (\S+)$/.exec(line.trim());
    if (c) consoleLogin = { url: c[1], user: c[2], password: c[3] };
    // `serve` prints the machine-readable "listening on http://ADDR" once bound.
    const m = /^listening on (http:\/\/\S+)$/.exec(line.trim());
    if (m && !base) base = m[1];
    // The demo's walkthrough prints an admin API token (used to read notification times).
    const t = /^Admin API token for this demo: (\S+)$/.exec(line.trim());
    if (t) adminToken = t[1];
  };
  for (const stream of [child.stdout, child.stderr]) {
    let buf = '';
    stream.on('data', (chunk) => {
      log.write(chunk);
      buf += chunk.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const done = await Promise.race([exit, sleep(5000).then(() => null)]);
      if (!done) {
        child.kill('SIGKILL');
        await exit;
      }
    }
    await new Promise((r) => log.end(r));
    removeTempDir(dir);
  };
  const failStart = async (why) => {
    await stop();
    throw new Error(`kami did not start: ${why}\n--- last output ---\n${tail.join('\n')}`);
  };
  const deadline = Date.now() + 60_000;
  while (!base) {
    if (exited) return failStart(`exited with ${JSON.stringify(exited)}`);
    if (Date.now() > deadline) return failStart('no "listening on" line within 60 s');
    await sleep(25);
  }
  for (;;) {
    if (exited) return failStart(`exited with ${JSON.stringify(exited)}`);
    if (Date.now() > deadline) return failStart(`${base}/healthz did not answer within 60 s`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    await sleep(50);
  }
  // The walkthrough (with the token) follows the "listening" line once the demo is seeded;
  // the console sign-in comes after it (its password is hashed first).
  const tokenDeadline = Date.now() + 20_000;
  while ((!adminToken || !consoleLogin) && Date.now() < tokenDeadline && !exited) await sleep(25);
  /**
   * Resolves with the first output line (already printed or still to come) matching `re`;
   * rejects after `timeout` ms.
   */
  const waitForLine = (re, what, timeout = 20_000) => {
    const old = lines.find((l) => re.test(l));
    if (old) return Promise.resolve(old);
    return new Promise((resolve, reject) => {
      const waiter = (line) => {
        if (!re.test(line)) return;
        lineWaiters.delete(waiter);
        clearTimeout(timer);
        resolve(line);
      };
      const timer = setTimeout(() => {
        lineWaiters.delete(waiter);
        reject(new Error(`timed out waiting for kami to log ${what} (${re})`));
      }, timeout);
      lineWaiters.add(waiter);
    });
  };
  return {
    base,
    adminToken,
    /** The demo's console sign-in `{url, user, password}` (printed on stderr), or null. */
    consoleLogin,
    stop,
    logPath,
    log: () => tail.join('\n'),
    waitForLine,
  };
}

// ---------------------------------------------------------------------------------------------
// The browser

/**
 * Headless Chromium with a fresh `--user-data-dir`, as one browser context with the given
 * context options (viewport, user agent...). `close()` ends the browser and removes the folder.
 */
export async function launchBrowser(contextOptions = DESKTOP) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM} (run bash e2e/setup.sh)`);
  }
  const userDataDir = tempDir('kami-e2e-chromium-');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    timeout: 60_000,
    acceptDownloads: true,
    ...contextOptions,
  });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  // A persistent context opens with one blank tab: use it as the first page.
  const close = async () => {
    try {
      await context.close();
    } finally {
      removeTempDir(userDataDir);
    }
  };
  return { context, close };
}

/** The first page of a fresh context, or a new one. */
export async function firstPage(context) {
  const blank = context.pages().find((p) => p.url() === 'about:blank');
  return blank || context.newPage();
}

// ---------------------------------------------------------------------------------------------
// Screenshots and timings

/** A cross-process lock (mkdir is atomic) around `fn`. */
function withLock(fn) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const lock = path.join(SHOTS, '.lock');
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      if (Date.now() > deadline) {
        // A process killed while holding it: take it over.
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

let prepared = false;
/**
 * The test files of one `node --test` run are children of the same runner process: the first
 * of them clears what an earlier run left (our PNGs, logs, timings), the others keep it.
 */
export function prepareShots() {
  if (prepared) return;
  prepared = true;
  withLock(() => {
    const marker = path.join(SHOTS, '.run');
    const run = String(process.ppid);
    let previous = null;
    try {
      previous = fs.readFileSync(marker, 'utf8');
    } catch {
      /* first run */
    }
    if (previous === run) return;
    for (const f of fs.readdirSync(SHOTS)) {
      if (/^\d+-.*\.png$/.test(f) || /^kami-.*\.log$/.test(f) || f === 'timings.json') {
        fs.rmSync(path.join(SHOTS, f), { force: true });
      }
    }
    fs.rmSync(path.join(SHOTS, '.seq'), { recursive: true, force: true });
    fs.writeFileSync(marker, run);
  });
}

/** The next screenshot number of this run (unique across the run's processes). */
function nextNumber() {
  const seq = path.join(SHOTS, '.seq');
  fs.mkdirSync(seq, { recursive: true });
  for (let n = 1; ; n++) {
    try {
      fs.mkdirSync(path.join(seq, String(n)));
      return n;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
  }
}

/**
 * Full-page PNG `<shots>/NN-flow-step.png`; returns its path. `options` go to Playwright's
 * `page.screenshot` (e.g. `{ scale: 'css' }`: one pixel per CSS pixel, much faster on a phone).
 */
export async function shot(page, flow, step, options = {}) {
  prepareShots();
  const n = String(nextNumber()).padStart(2, '0');
  const file = path.join(SHOTS, `${n}-${flow}-${step}.png`);
  await page.screenshot({ path: file, fullPage: true, ...options });
  return file;
}

/** Run `fn`; if it throws, screenshot every open tab as `NN-flow-FAILED-i.png`, then rethrow. */
export async function failureShots(context, flow, fn) {
  try {
    return await fn();
  } catch (e) {
    let i = 0;
    for (const page of context.pages()) {
      i += 1;
      try {
        await shot(page, flow, `FAILED-${i}`);
      } catch {
        /* a crashed or closing tab */
      }
    }
    throw e;
  }
}

/** Merge `entries` (flow → numbers) into `<shots>/timings.json`; returns the whole file. */
export function recordTimings(entries) {
  prepareShots();
  return withLock(() => {
    const file = path.join(SHOTS, 'timings.json');
    let all = { flows: {} };
    try {
      all = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      /* new */
    }
    Object.assign(all.flows, entries);
    const stats = (field) => {
      const xs = Object.values(all.flows)
        .map((f) => f[field])
        .filter((v) => typeof v === 'number');
      return xs.length
        ? {
            flows: xs.length,
            median_ms: median(xs),
            max_ms: Math.max(...xs),
            under_1s: xs.every((v) => v < 1000),
          }
        : null;
    };
    all.summary = {
      notification_to_key_ms:
        'kami received the simulator\'s notification (received_at of the first verified one in ' +
        'the admin order view) → the key is in the checkout page\'s DOM; target < 1000 ms',
      pay_click_to_key_ms:
        'click on Pay in the simulator → the key is in the checkout page\'s DOM (includes the ' +
        'simulator\'s own work before it notifies)',
      notification_to_key: stats('notification_to_key_ms'),
      pay_click_to_key: stats('pay_click_to_key_ms'),
    };
    fs.writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
    return all;
  });
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Poll `fn` until it returns a truthy value; throws `what` after `timeout` ms. */
export async function waitUntil(fn, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(50);
  }
}

/** `data-testid` selector. */
export const tid = (id) => `[data-testid="${id}"]`;
