// The web console over TLS in a real browser: Debian's headless Chromium, told to trust exactly
// the appliance's certificate (its public key's SHA-256, as a technician would after checking the
// fingerprint), signs in with the PIN and finds the same fingerprint on the status page.
// Needs `kneescreen run` listening beyond loopback (scripts/e2e.sh starts one): KNEESCREEN_HTTPS_URL,
// its certificate KNEESCREEN_CERT, the fingerprint from its log KNEESCREEN_FINGERPRINT, the PIN.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createHash } from 'node:crypto';
import { chromium } from 'playwright-core';

const BASE = process.env.KNEESCREEN_HTTPS_URL.replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PIN = process.env.KNEESCREEN_PIN;
const LOGGED = process.env.KNEESCREEN_FINGERPRINT;
const certificate = new X509Certificate(readFileSync(process.env.KNEESCREEN_CERT));
const spki = createHash('sha256')
  .update(certificate.publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');

let context;
let profile;
const problems = [];
// Before signing in, the appliance answers 401 with the sign-in page, which the browser logs as
// a failed load: only what happens once signed in counts.
let signedIn = false;
const problem = (text) => { if (signedIn) problems.push(text); };

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'kneescreen-e2e-https-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
  context.on('page', (page) => {
    page.on('pageerror', (e) => problem(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problem(`console: ${m.text()}`); });
    page.on('requestfailed', (r) => {
      if (!/panel\.png/.test(r.url())) problem(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the certificate served is the one whose fingerprint the appliance logs', () => {
  assert.equal(certificate.fingerprint256, LOGGED);
});

test('sign in over https; the status page shows the fingerprint; the session cookie is Secure', async () => {
  const page = await context.newPage();
  await page.goto(BASE + '/status');
  await page.locator('#pin').fill(PIN);
  await Promise.all([page.waitForURL(BASE + '/status'), page.locator('button[type=submit]').click()]);
  signedIn = true;
  assert.equal(new URL(page.url()).protocol, 'https:');
  await page.locator('dl.status dt', { hasText: 'Console certificate' }).waitFor();
  assert.match(await page.locator('dl.status').innerText(), new RegExp(LOGGED));
  const session = (await context.cookies(BASE)).find((c) => c.name === 'kneescreen_session');
  assert.ok(session, 'signed in');
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  await page.close();
});

test('no console errors, page errors or failed requests', () => {
  assert.deepEqual(problems, []);
});
