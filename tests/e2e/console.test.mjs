// The web console in a real browser: Debian's headless Chromium driven by playwright-core.
// Needs a running `kneescreen run` at KNEESCREEN_URL (scripts/e2e.sh starts one).
// Uploads a synthetic knee-like PNG made here, waits for the grade, checks the overlay loaded,
// then presses the virtual button on the panel page and watches the mirror change.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const BASE = (process.env.KNEESCREEN_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = process.env.E2E_OUT || join(import.meta.dirname, 'out');
const ANALYSIS_TIMEOUT = 120_000; // a Pi grades in seconds; the first image also warms the model

// --- a synthetic radiograph: dark soft tissue, femur above, tibia below, a joint space between.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
// A drawn knee as on a PA view (the same drawing as the Rust tests' support/util.rs): femur
// condyles, joint space, tibial plateau, fibula; `mirrored` draws a left knee.
function drawnKnee(x, y, cx, cy, size, mirrored) {
  let u = (x - cx) / size;
  const v = (y - cy) / size;
  if (mirrored) u = -u;
  const clamp = (a, lo, hi) => Math.min(hi, Math.max(lo, a));
  const soft = 0.42 - 0.08 * Math.max(0, Math.abs(v) - 0.3);
  if (Math.abs(u) > soft) return null;
  const condyleHalf = 0.13 + 0.17 * Math.sqrt(clamp((v + 0.45) / 0.35, 0, 1));
  const lobe = clamp((Math.abs(u) - 0.15) / 0.15, -1, 1);
  const condyleBottom = -0.03 + 0.04 * Math.sqrt(1 - lobe * lobe) - 0.05 * Math.max(0, 1 - Math.abs(u / 0.04));
  const femur = v < condyleBottom && Math.abs(u) < condyleHalf;
  const tibiaHalf = 0.3 - 0.18 * clamp((v - 0.1) / 0.25, 0, 1);
  const tibia = v > 0.03 && Math.abs(u) < tibiaHalf;
  const fibula = v > 0.12 && Math.abs(u + 0.27) < (v < 0.2 ? 0.06 : 0.03);
  const edge = (d) => 40 * (1 - Math.min(1, d / 0.02));
  if (femur || tibia) return 200 - Math.min(edge(condyleHalf - Math.abs(u)), tibia ? edge(v - 0.03) : 40);
  return fibula ? 170 : 70;
}

// A dark canvas with knees [cx, cy, size, mirrored], blurred a little, with grain.
function kneeFilm(w, h, knees) {
  let img = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = 12;
      for (const [cx, cy, s, m] of knees) {
        const k = drawnKnee(x, y, cx, cy, s, m);
        if (k !== null) { v = k; break; }
      }
      img[y * w + x] = v;
    }
  }
  const sigma = Math.max(0.5, Math.max(...knees.map((k) => k[2])) * 0.008);
  const r = Math.ceil(3 * sigma);
  const kernel = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b);
  for (const [dx, dy] of [[1, 0], [0, 1]]) {
    const out = new Float32Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let i = -r; i <= r; i++) {
          const xx = Math.min(w - 1, Math.max(0, x + i * dx));
          const yy = Math.min(h - 1, Math.max(0, y + i * dy));
          acc += kernel[i + r] * img[yy * w + xx];
        }
        out[y * w + x] = acc / total;
      }
    }
    img = out;
  }
  const raw = Buffer.alloc(h * (w + 1));
  let state = 2463534242;
  for (let y = 0; y < h; y++) {
    raw[y * (w + 1)] = 0; // filter: none
    for (let x = 0; x < w; x++) {
      state ^= state << 13; state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5; state >>>= 0;
      raw[y * (w + 1) + 1 + x] = Math.min(255, Math.round(img[y * w + x]) + (state % 13));
    }
  }
  return greyPng(w, h, raw);
}

// One knee filling the image, like the training crops.
const syntheticKneePng = (size = 320) => kneeFilm(size, size, [[size / 2, size / 2, 1.15 * size, false]]);
// Both knees standing: the patient's right knee on the image's left.
const bilateralPng = (w = 1400, h = 1000) =>
  kneeFilm(w, h, [[0.27 * w, 0.5 * h, 0.42 * h, false], [0.73 * w, 0.5 * h, 0.42 * h, true]]);

function greyPng(width, height, raw) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grayscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// --- browser
let context;
let profile;
const problems = []; // console errors, page errors and failed requests (CSP violations show here)

before(async () => {
  mkdirSync(OUT, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'kneescreen-e2e-profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.on('page', watch);
  for (const p of context.pages()) watch(p);
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

function watch(page) {
  page.on('console', (m) => {
    // The refused calibration (422, checked in its test) is logged by the browser as well.
    const refused = /\/api\/calibrate$/.test(m.location().url || '') && /422/.test(m.text());
    if (m.type() === 'error' && !refused) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // A panel refresh cut short by the next navigation is not a problem.
    if (!/panel\.png/.test(r.url())) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

async function naturalWidth(locator) {
  await locator.waitFor({ state: 'attached' });
  const handle = await locator.elementHandle();
  await handle.evaluate((img) => (img.complete ? null : new Promise((ok) => {
    img.addEventListener('load', ok, { once: true });
    img.addEventListener('error', ok, { once: true });
  })));
  return handle.evaluate((img) => img.naturalWidth);
}

// Waits until every <img> on the page has loaded (or failed), so closing the page cuts nothing short.
function imagesLoaded(page) {
  return page.waitForFunction(() => [...document.images].every((img) => img.complete));
}

// A fingerprint of the pixels the mirror <img> shows now.
function mirrorPixels(page) {
  return page.evaluate(() => {
    const img = document.getElementById('mirror');
    if (!img.complete || !img.naturalWidth) return null;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let h = 2166136261;
    for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619) >>> 0;
    return `${c.width}x${c.height}:${h}`;
  });
}

let studyUrl;

test('upload a synthetic X-ray and a text file, see the grade, the overlay and the rejection', async () => {
  const page = await context.newPage();
  await page.goto(BASE + '/');
  const png = syntheticKneePng();
  writeFileSync(join(OUT, 'synthetic-knee.png'), png);
  // Two files at once: they are analysed one after the other; the text file is rejected.
  await page.locator('#file').setInputFiles([
    { name: 'synthetic-knee.png', mimeType: 'image/png', buffer: png },
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an X-ray') },
  ]);

  const rejected = page.locator('.job', { hasText: 'notes.txt' });
  await rejected.locator('.kl').waitFor({ timeout: ANALYSIS_TIMEOUT });
  assert.equal(await rejected.locator('.kl').innerText(), 'Rejected');
  assert.ok((await rejected.locator('.desc').innerText()).length > 0, 'a reason for the rejection');

  const job = page.locator('.job', { hasText: 'synthetic-knee.png' });
  await job.locator('.kl').waitFor({ timeout: ANALYSIS_TIMEOUT });
  const grade = await job.locator('.kl').innerText();
  assert.match(grade, /^KL [0-4]/, `grade text: ${grade}`);
  assert.ok(await naturalWidth(job.locator('img.overlay')) > 0, 'the overlay image loaded');
  await page.screenshot({ path: join(OUT, 'upload.png'), fullPage: true });

  await job.locator('a.open').click();
  await page.waitForURL(/\/study\/[A-Za-z0-9_-]+$/);
  studyUrl = page.url();
  await page.locator('.summary .kl').waitFor();
  assert.match(await page.locator('.summary .kl').innerText(), /^KL [0-4]/);
  assert.ok((await page.locator('.summary .desc').innerText()).length > 0, 'grade description');
  assert.match(await page.locator('.badge.oa, .badge.no-oa').innerText(), /^OA: (yes|no)/);
  assert.equal(await page.locator('.bars .bar').count(), 5, 'a bar per KL grade');
  assert.match(await page.locator('.summary .notice').innerText(), /not a diagnosis/i);
  assert.ok(await naturalWidth(page.locator('figure.overlay img')) > 0, 'overlay on the study page');
  assert.ok(await naturalWidth(page.locator('figure.input img')) > 0, 'network input on the study page');
  const downloads = await page.locator('.downloads a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.ok(downloads.some((h) => h.endsWith('.json')) && downloads.some((h) => h.endsWith('.overlay.png')));
  const json = await page.request.get(BASE + downloads.find((h) => h.endsWith('.json')));
  assert.equal(json.status(), 200);
  assert.match(String((await json.json()).grade), /^[0-4]$/);
  await page.screenshot({ path: join(OUT, 'study.png'), fullPage: true });
  await page.close();
});

test('a bilateral radiograph shows the film with both knees and a card per knee', async () => {
  const page = await context.newPage();
  await page.goto(BASE + '/');
  const png = bilateralPng();
  writeFileSync(join(OUT, 'synthetic-bilateral.png'), png);
  await page.locator('#file').setInputFiles([{ name: 'bilateral.png', mimeType: 'image/png', buffer: png }]);
  const job = page.locator('.job', { hasText: 'bilateral.png' });
  await job.locator('.kl').waitFor({ timeout: ANALYSIS_TIMEOUT });
  assert.match(await job.locator('.kl').innerText(), /^KL [0-4]/);
  // Leaving the page while the overlay still loads would cut its request short.
  assert.ok(await naturalWidth(job.locator('img.overlay')) > 0, 'the overlay image loaded');
  await job.locator('a.open').click();
  await page.waitForURL(/\/study\/[A-Za-z0-9_-]+$/);
  await page.locator('figure.film img').waitFor();
  assert.ok(await naturalWidth(page.locator('figure.film img')) > 0, 'the film loaded');
  const tags = await page.locator('figure.film .knee-tag').allInnerTexts();
  assert.deepEqual(tags.map((t) => t.split(' ')[0]), ['R', 'L'], `tags: ${tags}`);
  const cards = page.locator('.card.knee');
  assert.equal(await cards.count(), 2);
  assert.deepEqual(await cards.locator('h2').allInnerTexts(), ['Right knee', 'Left knee']);
  for (let i = 0; i < 2; i++) {
    const card = cards.nth(i);
    assert.match(await card.locator('.kl').innerText(), /^KL [0-4]/);
    assert.equal(await card.locator('.bars .bar').count(), 5);
    assert.ok(await naturalWidth(card.locator('figure.overlay img')) > 0, `knee ${i + 1} heatmap loaded`);
    assert.ok(await naturalWidth(card.locator('figure.input img')) > 0, `knee ${i + 1} input loaded`);
  }
  // The clinician's own grade of the left knee, kept for site calibration.
  await cards.nth(1).locator('.site-grade select').selectOption('3');
  await cards.nth(1).locator('.site-grade [role=status]', { hasText: 'saved' }).waitFor();
  const grades = await (await page.request.get(BASE + '/api/site-grades')).json();
  const stem = new URL(page.url()).pathname.split('/').pop();
  assert.deepEqual(grades.grades[stem], { 1: 3 });
  await page.reload();
  await page.locator('.card.knee').nth(1).locator('.site-grade select').waitFor();
  assert.equal(await page.locator('.card.knee').nth(1).locator('.site-grade select').inputValue(), '3');
  await imagesLoaded(page);
  await page.screenshot({ path: join(OUT, 'study-bilateral.png'), fullPage: true });
  await page.close();
});

test('the study is listed among recent studies', async () => {
  const page = await context.newPage();
  await page.goto(BASE + '/recent');
  const link = page.locator('table.recent a', { hasText: 'synthetic-knee' }).first();
  await link.waitFor();
  assert.equal(new URL(await link.evaluate((a) => a.href)).pathname, new URL(studyUrl).pathname);
  await page.close();
});

test('the panel mirror follows the virtual button', async () => {
  const page = await context.newPage();
  const presses = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/api/button') && r.method() === 'POST') presses.push(JSON.parse(r.postData()).event);
  });
  await page.goto(BASE + '/panel');
  const mirror = page.locator('#mirror');
  assert.ok(await naturalWidth(mirror) > 0, 'the mirror shows a frame');
  await page.waitForFunction(() => document.getElementById('mirror').complete);
  const before = await mirrorPixels(page);
  assert.ok(before, 'the mirror frame can be read');

  await page.locator('#press').click(); // a short press: the next view
  let after = before;
  for (const deadline = Date.now() + 15_000; after === before && Date.now() < deadline;) {
    await page.waitForTimeout(250);
    after = (await mirrorPixels(page)) ?? before;
  }
  assert.notEqual(after, before, 'the mirror shows a new frame after the press');
  assert.deepEqual(presses, ['next']);
  await page.screenshot({ path: join(OUT, 'panel.png'), fullPage: true });

  // A long press (held ≥ 0.8 s): the previous study.
  const box = await page.locator('#press').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.waitForTimeout(1000);
  await page.mouse.up();
  for (let i = 0; i < 20 && presses.length < 2; i++) await page.waitForTimeout(100);
  assert.deepEqual(presses, ['next', 'previous']);
  await page.close();
});

test('the status page shows the model', async () => {
  const page = await context.newPage();
  await page.goto(BASE + '/status');
  await page.locator('dl.status dt').first().waitFor();
  const text = await page.locator('dl.status').innerText();
  assert.match(text, /Model/);
  // Site calibration: one knee graded so far, so calibrating is refused with the reason.
  const card = page.locator('.card.calibration');
  await card.locator('p.muted', { hasText: 'knees graded here' }).waitFor();
  assert.match(await card.innerText(), /1 knees graded here .*KL3 1/);
  await card.locator('button', { hasText: 'Calibrate to this site' }).click();
  await card.locator('pre.report', { hasText: 'Not done' }).waitFor({ timeout: ANALYSIS_TIMEOUT });
  assert.match(await card.locator('pre.report').innerText(), /at least 50/);
  await page.close();
});

test('no console errors, page errors or failed requests', () => {
  assert.deepEqual(problems, []);
});
