// kneescreen web console: one page per URL (upload, study, recent, panel, status), built with
// DOM calls only — record fields (file names) come from clients and are never parsed as HTML.
'use strict';

const main = document.getElementById('main');
const LONG_PRESS_MS = 800; // the physical button's long press (previous study)

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const pct = (p) => (100 * p).toFixed(p > 0.995 || p < 0.005 ? 0 : 1) + '%';
const ms = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + ' ms';

function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

// A JSON API call; an expired login reloads the page, which then shows the sign-in form.
async function api(path, options) {
  const res = await fetch(path, Object.assign({ credentials: 'same-origin' }, options));
  if (res.status === 401) { location.reload(); throw new Error('signed out'); }
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || res.status + ' ' + res.statusText);
  return { body, res };
}

// The results folder's file names ({json, overlay, input} → suffix), filled in by the appliance.
const RESULT_FILES = /*RESULT_FILES*/{};
const resultName = (stem, kind, n) => stem + RESULT_FILES[kind].replace('{n}', n);
// The study's stem from the answer's Content-Location (/api/results/<stem><json suffix>).
const stemOf = (url) => {
  const m = /^\/api\/results\/([A-Za-z0-9_-]+)$/.exec(url.endsWith(RESULT_FILES.json) ? url.slice(0, -RESULT_FILES.json.length) : '');
  return m && m[1];
};
const resultUrl = (stem, kind, n) => '/api/results/' + encodeURIComponent(resultName(stem, kind, n));

function failure(message) {
  return h('p', { class: 'error', role: 'alert' }, message);
}

// Grade, description and the OA / confidence / refer badges of a record.
function gradeSummary(rec) {
  if (rec.status !== 'ok') {
    return h('div', { class: 'grade rejected' },
      h('div', { class: 'kl' }, 'Rejected'),
      h('p', { class: 'desc' }, rec.reason || 'The file could not be analysed.'));
  }
  return h('div', { class: 'grade g' + rec.grade },
    h('div', { class: 'kl' }, 'KL ' + rec.grade, h('span', { class: 'name' }, rec.grade_name)),
    h('p', { class: 'desc' }, rec.grade_description),
    h('p', { class: 'badges' },
      h('span', { class: 'badge ' + (rec.oa ? 'oa' : 'no-oa') }, oaCall(rec)),
      h('span', { class: 'badge' }, 'Confidence ' + pct(rec.confidence)),
      rec.refer ? h('span', { class: 'badge refer' }, 'Refer: ' + referReason(rec)) : null));
}

// "OA: yes (42% ≥ 31%)": the call and, when the model has an operating point, the probability
// against its threshold (the call is P(KL ≥ 2) ≥ threshold, set for a target sensitivity).
function oaCall(rec) {
  const call = rec.oa_call;
  const rule = call
    ? pct(rec.oa_probability) + (rec.oa ? ' ≥ ' : ' < ') + pct(call.threshold)
    : pct(rec.oa_probability);
  const el = h('span', {}, 'OA: ' + (rec.oa ? 'yes' : 'no') + ' (' + rule + ')');
  if (call) {
    el.title = 'OA is called when P(KL ≥ 2) reaches ' + pct(call.threshold) + ', set for sensitivity '
      + pct(call.target_sensitivity) + ' (' + pct(call.sensitivity) + ' sensitivity, '
      + pct(call.specificity) + ' specificity on ' + call.source + ')';
  }
  return el;
}

// Why a record is referred, in the words the panel uses (src/record.rs, ReferReason::label).
function referReason(rec) {
  return rec.refer_reason === 'not_a_radiograph' ? 'not a greyscale radiograph' : 'low confidence';
}

function bars(probabilities, grade) {
  return h('div', { class: 'bars', role: 'list', 'aria-label': 'Probability of each KL grade' },
    probabilities.map((p, i) => {
      const fill = h('span', { class: 'fill' });
      fill.style.width = (100 * p).toFixed(1) + '%';
      return h('div', { class: 'bar' + (i === grade ? ' top' : ''), role: 'listitem' },
        h('span', { class: 'label' }, 'KL' + i),
        h('span', { class: 'track' }, fill),
        h('span', { class: 'value' }, pct(p)));
    }));
}

function picture(src, caption, cls) {
  const fig = h('figure', { class: cls });
  const img = h('img', { src, alt: caption, class: cls });
  img.addEventListener('error', () => fig.classList.add('missing'));
  fig.append(img, h('figcaption', {}, caption));
  return fig;
}

/* Upload page: files go one after another (the appliance analyses one at a time anyway). */
async function uploadPage() {
  let maxBytes = Infinity;
  api('/api/status').then(({ body }) => {
    if (body && body.web && body.web.max_upload_bytes) maxBytes = body.web.max_upload_bytes;
  }).catch(() => {});
  const input = h('input', {
    type: 'file', id: 'file', name: 'file', multiple: true,
    accept: 'image/png,image/jpeg,application/dicom,.png,.jpg,.jpeg,.dcm',
  });
  const zone = h('label', { class: 'drop', for: 'file' },
    h('strong', {}, 'Drop knee X-rays here'),
    h('span', {}, 'or click to choose files (PNG, JPEG)'), input);
  const jobs = h('ol', { class: 'jobs', id: 'jobs' });
  main.replaceChildren(h('h1', {}, 'Grade knee X-rays'), zone, jobs);

  const queue = [];
  let running = false;
  const add = (files) => {
    for (const file of files) {
      const job = newJob(file);
      jobs.prepend(job.el);
      queue.push(job);
    }
    if (!running) pump();
  };
  const pump = async () => {
    running = true;
    while (queue.length) await runJob(queue.shift(), maxBytes);
    running = false;
  };
  input.addEventListener('change', () => { add([...input.files]); input.value = ''; });
  for (const ev of ['dragenter', 'dragover']) {
    zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add('over'); });
  }
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    add([...e.dataTransfer.files]);
  });
}

function newJob(file) {
  const bar = h('progress', { max: 1, value: 0 });
  const state = h('span', { class: 'state' }, 'Waiting');
  const el = h('li', { class: 'job' },
    h('div', { class: 'job-head' }, h('span', { class: 'file' }, file.name),
      h('span', { class: 'size' }, bytes(file.size)), state), bar);
  return {
    file, el,
    progress(fraction, text) {
      if (fraction == null) bar.removeAttribute('value'); else bar.value = fraction;
      state.textContent = text;
    },
    fail(message) {
      bar.remove();
      state.textContent = 'Failed';
      el.classList.add('failed');
      el.append(failure(message));
    },
    done(rec, stem) {
      bar.remove();
      state.textContent = rec.status === 'ok' ? 'Done' : 'Rejected';
      const card = h('div', { class: 'result' }, gradeSummary(rec));
      if (stem) {
        if (rec.status === 'ok') {
          card.prepend(picture(resultUrl(stem, 'overlay'), 'Grad-CAM overlay', 'overlay'));
        }
        card.append(h('a', { class: 'open', href: '/study/' + encodeURIComponent(stem) }, 'Open study →'));
      }
      el.append(card);
    },
  };
}

function send(job) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/analyze');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) job.progress(e.loaded / e.total, 'Uploading ' + pct(e.loaded / e.total));
    });
    xhr.upload.addEventListener('load', () => job.progress(null, 'Analysing…'));
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      resolve({ status: xhr.status, body, location: xhr.getResponseHeader('Content-Location') });
    });
    xhr.addEventListener('error', () => resolve({ status: 0, body: null }));
    const form = new FormData();
    form.append('file', job.file, job.file.name);
    xhr.send(form);
  });
}

async function runJob(job, maxBytes) {
  if (job.file.size > maxBytes) {
    job.fail('This file is larger than the upload limit (' + bytes(maxBytes) + ').');
    return;
  }
  for (let attempt = 0; attempt < 60; attempt++) {
    job.progress(0, 'Uploading');
    const r = await send(job);
    if (r.status === 503) { // other uploads are being analysed: wait for a slot
      job.progress(null, 'Waiting for the appliance…');
      await new Promise((ok) => setTimeout(ok, 2000));
      continue;
    }
    if (r.status === 401) { location.reload(); return; }
    if (r.status === 200 && r.body) {
      job.done(r.body, stemOf(r.location || ''));
      return;
    }
    job.fail((r.body && r.body.error) || (r.status ? 'Error ' + r.status : 'The appliance did not answer.'));
    return;
  }
  job.fail('The appliance stayed busy; try again later.');
}

const postJson = (path, value) => api(path, {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(value),
});

// The clinician's own KL grade of one knee (for calibrating the appliance to this site).
function gradeEntry(stem, knee, grades) {
  const given = ((grades || {})[stem] || {})[knee];
  const select = h('select', { 'aria-label': 'Your KL grade of this knee' },
    h('option', { value: '' }, 'not graded'),
    ...[0, 1, 2, 3, 4].map((g) => h('option', { value: String(g) }, 'KL' + g)));
  select.value = given == null ? '' : String(given);
  const state = h('span', { class: 'muted', role: 'status' });
  select.addEventListener('change', async () => {
    state.textContent = 'saving…';
    try {
      await postJson('/api/site-grades', { stem, knee, grade: select.value === '' ? null : Number(select.value) });
      state.textContent = 'saved';
    } catch (e) {
      state.textContent = 'not saved: ' + e.message;
    }
  });
  return h('p', { class: 'site-grade' }, h('label', {}, 'Your grade (for site calibration): ', select), ' ', state);
}

/* Study page: everything the record says, the pictures and the downloads. */
async function studyPage(stem) {
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let rec;
  try {
    rec = (await api(resultUrl(stem, 'json'))).body;
  } catch (e) {
    main.replaceChildren(h('h1', {}, 'Study'), failure(e.message));
    return;
  }
  const ok = rec.status === 'ok';
  let grades = {};
  try { grades = (await api('/api/site-grades')).body.grades; } catch (_) { /* shown without */ }
  const info = h('section', { class: 'card summary' }, gradeSummary(rec));
  if (ok) {
    info.append(h('h2', {}, 'Probabilities'), bars(rec.probabilities, rec.grade));
    if (rec.warnings && rec.warnings.length) {
      info.append(h('ul', { class: 'warnings' }, rec.warnings.map((w) => h('li', {}, w))));
    }
  }
  const found = ok && isFilm(rec);
  if (ok && !found) info.append(gradeEntry(stem, 0, grades));
  info.append(h('p', { class: 'notice' }, rec.notice || 'Screening aid — not a diagnosis.'));
  const parts = [
    h('p', { class: 'crumbs' }, h('a', { href: '/recent' }, '← Recent studies')),
    h('h1', { class: 'study-title' }, rec.file || stem),
    await patientLine(stem),
    h('div', { class: 'study' }, info, ok && !found ? h('section', { class: 'pictures' },
      picture(resultUrl(stem, 'overlay'), 'X-ray with Grad-CAM heatmap and region of interest', 'overlay'),
      picture(resultUrl(stem, 'input'), 'Network input (preprocessed)', 'input')) : null),
    found ? filmCard(stem, rec) : null,
    ...(found ? rec.knees.map((k, i) => kneeCard(stem, rec, k, i + 1, gradeEntry(stem, i, grades))) : []),
  ];
  const details = h('dl', { class: 'details' });
  const row = (k, v) => details.append(h('dt', {}, k), h('dd', {}, v));
  if (ok) {
    const t = rec.timings_ms || {};
    row('Timings', ['decode', 'localize', 'preprocess', 'inference', 'cam', 'overlay', 'total']
      .filter((k) => t[k] != null).map((k) => k + ' ' + ms(t[k])).join(' · '));
    if (rec.model) row('Model', rec.model.name + ' (' + rec.model.variant + ')');
    row('Image', rec.input_width + ' × ' + rec.input_height + ' px');
  }
  const d = rec.dicom;
  if (d) {
    row('DICOM', [d.modality, d.view_position, d.laterality && 'laterality ' + d.laterality,
      d.photometric, d.bits_stored + '-bit'].filter(Boolean).join(' · '));
    if (d.pixel_spacing_mm) row('Pixel spacing', d.pixel_spacing_mm.join(' × ') + ' mm');
    if (d.study_instance_uid) row('Study UID', d.study_instance_uid);
  }
  if (rec.input_sha256) row('SHA-256', rec.input_sha256);
  const downloads = h('p', { class: 'downloads' },
    h('a', { class: 'button', href: resultUrl(stem, 'json'), download: resultName(stem, 'json') }, 'Download JSON'),
    ok ? h('a', { class: 'button', href: resultUrl(stem, 'overlay'), download: resultName(stem, 'overlay') },
      'Download overlay PNG') : null);
  parts.push(h('section', { class: 'card' }, h('h2', {}, 'Details'), details, downloads));
  main.replaceChildren(...parts.filter(Boolean));
  document.title = (ok ? 'KL ' + rec.grade : 'Rejected') + ' · ' + (rec.file || stem) + ' · kneescreen';
}

// Knees were found in a larger radiograph (rather than the whole image being one joint crop).
function isFilm(rec) {
  return Array.isArray(rec.knees) && rec.knees.some((k) => k.detector_score != null);
}

const sideTitle = { right: 'Right knee', left: 'Left knee', unknown: 'Knee, side unknown' };
const sideLetter = { right: 'R', left: 'L', unknown: '?' };

// The whole radiograph with a labelled box per knee (the boxes are drawn in the picture).
function filmCard(stem, rec) {
  const fig = h('figure', { class: 'film' });
  const img = h('img', { src: resultUrl(stem, 'film'), alt: 'Radiograph with the knee joints found' });
  img.addEventListener('error', () => fig.classList.add('missing'));
  fig.append(img);
  for (const k of rec.knees) {
    const [x, y] = k.box;
    const tag = h('span', { class: 'knee-tag' + (k.refer ? ' refer' : k.oa ? ' oa' : ' no-oa') },
      sideLetter[k.side] + ' KL' + k.grade);
    tag.style.left = Math.max(0, 100 * x / rec.input_width).toFixed(2) + '%';
    tag.style.top = Math.max(0, 100 * y / rec.input_height).toFixed(2) + '%';
    fig.append(tag);
  }
  const n = rec.knees.length;
  return h('section', { class: 'card' }, h('h2', {}, n === 1 ? '1 knee joint found' : n + ' knee joints found'), fig);
}

// One knee of a radiograph: its grade, probabilities, warnings, pictures and the clinician's grade.
function kneeCard(stem, rec, k, n, entry) {
  const summary = gradeSummary(Object.assign({ status: 'ok', oa_call: rec.oa_call }, k));
  const warnings = k.warnings && k.warnings.length
    ? h('ul', { class: 'warnings' }, k.warnings.map((w) => h('li', {}, w))) : null;
  return h('section', { class: 'card knee' },
    h('h2', {}, sideTitle[k.side] || 'Knee'),
    h('div', { class: 'study' },
      h('div', { class: 'summary' }, summary, bars(k.probabilities, k.grade), warnings, entry),
      h('section', { class: 'pictures' },
        picture(resultUrl(stem, 'knee_overlay', n), 'Grad-CAM heatmap, ' + (sideTitle[k.side] || 'knee'), 'overlay'),
        picture(resultUrl(stem, 'knee_input', n), 'Network input (preprocessed)', 'input'))));
}

/* The patient of a DICOM study: answered only when the appliance is set to show identity. */
async function patientLine(stem) {
  let p;
  try {
    p = (await api('/api/patient/' + encodeURIComponent(stem))).body;
  } catch (_) {
    return null;
  }
  if (!p) return null; // identity is not shown on this appliance, or not for this study
  const parts = [p.name, p.id && 'ID ' + p.id, p.birth_date && 'born ' + p.birth_date].filter(Boolean);
  return h('p', { class: 'patient' }, 'Patient: ' + parts.join(' · '));
}

/* Recent studies, from the results folder (USB and scanner inputs included). */
async function recentPage() {
  const table = h('table', { class: 'recent' });
  const note = h('p', { class: 'muted' }, 'Loading…');
  main.replaceChildren(h('h1', {}, 'Recent studies'), note, table);
  const load = async () => {
    let list;
    try {
      list = (await api('/api/results?limit=100')).body;
    } catch (e) {
      note.replaceWith(failure(e.message));
      return;
    }
    note.textContent = list.length ? '' : 'No studies yet.';
    table.replaceChildren(h('tr', {}, ['File', 'Result', 'OA', 'Confidence', ''].map((c) => h('th', {}, c))),
      ...list.map(({ stem, record: r }) => {
        const ok = r.status === 'ok';
        return h('tr', { class: ok ? 'g' + r.grade : 'rejected' },
          h('td', {}, h('a', { href: '/study/' + encodeURIComponent(stem) }, r.file || stem)),
          h('td', {}, ok ? 'KL ' + r.grade + ' · ' + r.grade_name : 'Rejected'),
          h('td', {}, ok ? (r.oa ? 'yes' : 'no') : '–'),
          h('td', {}, ok ? pct(r.confidence) : '–'),
          h('td', {}, ok && r.refer ? h('span', { class: 'badge refer' }, 'Refer') : ''));
      }));
  };
  await load();
  setInterval(() => { if (!document.hidden) load(); }, 10000);
}

/* Panel mirror and the virtual button: short press = next view, hold = previous study. */
function panelPage() {
  const img = h('img', { id: 'mirror', class: 'mirror', alt: 'What the appliance panel shows' });
  const note = h('p', { class: 'muted', id: 'panel-note' }, '');
  const button = h('button', { id: 'press', class: 'press', type: 'button' }, 'Button');
  main.replaceChildren(h('h1', {}, 'Panel'),
    h('div', { class: 'panel' }, img,
      h('div', { class: 'controls' }, button,
        h('p', { class: 'muted' }, 'Click: next view. Hold ' + LONG_PRESS_MS / 1000 +
          ' s (or Shift+Enter): previous study.'), note)));

  // The old frame stays on screen until the new one has loaded, so there is no flicker.
  let loading = false;
  const refresh = () => {
    if (loading || document.hidden) return;
    loading = true;
    img.src = '/api/panel.png?t=' + Date.now();
  };
  img.addEventListener('load', () => { loading = false; note.textContent = ''; });
  img.addEventListener('error', () => { loading = false; note.textContent = 'No frame from the panel yet.'; });
  refresh();
  setInterval(refresh, 1000);

  const press = async (event) => {
    try {
      await postJson('/api/button', { event });
    } catch (e) {
      note.textContent = e.message;
    }
    setTimeout(refresh, 150);
    setTimeout(refresh, 600);
  };
  let downAt = 0;
  let timer = 0;
  const reset = () => { downAt = 0; clearTimeout(timer); button.classList.remove('held', 'long'); };
  button.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    downAt = performance.now();
    button.setPointerCapture(e.pointerId);
    button.classList.add('held');
    timer = setTimeout(() => button.classList.add('long'), LONG_PRESS_MS);
  });
  button.addEventListener('pointerup', () => {
    if (!downAt) return;
    const held = performance.now() - downAt;
    reset();
    press(held >= LONG_PRESS_MS ? 'previous' : 'next');
  });
  button.addEventListener('pointercancel', reset);
  button.addEventListener('contextmenu', (e) => e.preventDefault()); // a long touch on a tablet
  button.addEventListener('keydown', (e) => {
    if ((e.key === 'Enter' || e.key === ' ') && !e.repeat) {
      e.preventDefault();
      press(e.shiftKey ? 'previous' : 'next');
    }
  });
}

/* Appliance status: whatever the appliance reports, refreshed every few seconds. */
function statusPage() {
  const list = h('dl', { class: 'details status' });
  const extra = h('div');
  main.replaceChildren(h('h1', {}, 'Status'), h('section', { class: 'card' }, list), extra);
  const label = (k) => k.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
  const show = (k, v) => {
    if (v == null || v === '') return '–';
    if (/bytes/.test(k) && typeof v === 'number') return bytes(v);
    if (Array.isArray(v)) return v.length ? v.join(', ') : '–';
    if (typeof v === 'object') return Object.entries(v).map(([a, b]) => label(a) + ': ' + show(a, b)).join(' · ');
    return String(v);
  };
  const load = async () => {
    try {
      const { body } = await api('/api/status');
      list.replaceChildren(...Object.entries(body).flatMap(([k, v]) => [h('dt', {}, label(k)), h('dd', {}, show(k, v))]));
      if (body.web && body.web.login && !extra.firstChild) {
        extra.append(h('form', { method: 'post', action: '/logout' }, h('button', { type: 'submit' }, 'Sign out')));
      }
    } catch (e) {
      list.replaceChildren(failure(e.message));
    }
  };
  load();
  setInterval(() => { if (!document.hidden) load(); }, 5000);
  main.append(calibrationCard());
}

/* Site calibration: the knees the clinician graded, and a head fitted to them. */
function calibrationCard() {
  const counts = h('p', { class: 'muted' }, 'Loading…');
  const report = h('pre', { class: 'report', hidden: true });
  const force = h('input', { type: 'checkbox' });
  const calibrate = h('button', { type: 'button' }, 'Calibrate to this site');
  const revert = h('button', { type: 'button' }, 'Back to the shipped head');
  const refresh = async () => {
    try {
      const { body } = await api('/api/site-grades');
      const total = body.counts.reduce((a, b) => a + b, 0);
      counts.textContent = body.error || (total + ' knees graded here (' + body.counts.map((n, g) => 'KL' + g + ' ' + n).join(', ') +
        '); calibration needs at least ' + body.min_knees + '. Grading head: ' + body.head + '.');
    } catch (e) {
      counts.textContent = e.message;
    }
  };
  const run = async (button, path, value) => {
    button.disabled = true;
    report.hidden = false;
    report.textContent = 'Working… (every graded knee is analysed again; this takes a while)';
    try {
      const { body } = await postJson(path, value);
      report.textContent = body.report || (body.was ? 'Back to the shipped head; ' + body.was + ' is kept.' : 'The shipped head is in use.');
    } catch (e) {
      report.textContent = 'Not done: ' + e.message;
    }
    button.disabled = false;
    refresh();
  };
  calibrate.addEventListener('click', () => run(calibrate, '/api/calibrate', { force: force.checked }));
  revert.addEventListener('click', () => run(revert, '/api/calibrate/revert', {}));
  refresh();
  return h('section', { class: 'card calibration' }, h('h2', {}, 'Site calibration'),
    h('p', {}, 'Grade knees on their study pages, then fit a grading head to this site\'s scanner. ' +
      'It becomes active only when cross-validation on your grades shows it does better than the shipped head.'),
    counts, h('p', {}, calibrate, ' ', h('label', {}, force, ' activate even without a gain'), ' ', revert), report);
}

const path = location.pathname;
for (const a of document.querySelectorAll('nav a')) {
  const href = a.getAttribute('href');
  if (href === path || (href === '/recent' && path.startsWith('/study/'))) a.setAttribute('aria-current', 'page');
}
if (path.startsWith('/study/')) studyPage(decodeURIComponent(path.slice('/study/'.length)));
else if (path === '/recent') recentPage();
else if (path === '/panel') panelPage();
else if (path === '/status') statusPage();
else uploadPage();
