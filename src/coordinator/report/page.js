/* The run report's page script (compiled into nntrain; coordinator/report.c).
 * Reads the page's data (the JSON in #nn-data) and draws every section with
 * Chart.js (inlined above it) and plain DOM. Exposes window.nnReport: the
 * charts by name, the counts it drew, and any error, for a person's console
 * and for tests/report_browser.py. docs/report.md. */
(function () {
  'use strict';
  const R = (window.nnReport = { ready: false, charts: {}, sections: [], errors: [] });
  window.addEventListener('error', function (e) { R.errors.push(String(e.message)); });
  const data = JSON.parse(document.getElementById('nn-data').textContent);
  const recs = data.records || [];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function section(id, title) {
    const s = el('section', { id: id });
    s.appendChild(el('h2', {}, title));
    document.body.appendChild(s);
    R.sections.push(id);
    return s;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return '-';
    return Number(v).toPrecision(digits || 4);
  }
  function pct(v) { return v === null || v === undefined ? '-' : (100 * v).toFixed(2) + '%'; }
  const palette = ['#2f6fde', '#e0592a', '#2a9d5c', '#9b51e0', '#c9a227', '#17a2b8', '#d6336c'];

  /* A line chart of named series of {x, y} points in `parent`. */
  function chart(parent, name, series, opts) {
    const box = el('div', { class: 'chart' });
    const canvas = el('canvas', { id: 'chart-' + name, 'data-chart': name });
    box.appendChild(canvas);
    parent.appendChild(box);
    const datasets = series.map(function (s, i) {
      return {
        label: s.label, data: s.points, type: s.type || 'line', yAxisID: s.axis || 'y',
        borderColor: s.color || palette[i % palette.length],
        backgroundColor: s.color || palette[i % palette.length],
        borderWidth: s.width || 1.5, pointRadius: s.radius === undefined ? 2.5 : s.radius,
        showLine: s.showLine !== false, spanGaps: true,
      };
    });
    /* a log axis labels its powers of ten only (Chart.js labels 1, 2, 5 of each decade) */
    const decades = { callback: function (v) {
      const e = Math.log10(v);
      return Math.abs(e - Math.round(e)) < 1e-9 ? Number(v).toExponential(0) : '';
    } };
    const scales = {
      x: { type: opts.xlog ? 'logarithmic' : 'linear', title: { display: true, text: opts.xlabel },
           ticks: opts.xlog ? decades : {} },
      y: { type: opts.ylog ? 'logarithmic' : 'linear', title: { display: true, text: opts.ylabel },
           ticks: opts.ylog ? decades : {}, beginAtZero: !!opts.yzero },
    };
    if (opts.y2label)
      scales.y2 = { position: 'right', title: { display: true, text: opts.y2label },
                    grid: { drawOnChartArea: false }, beginAtZero: true };
    R.charts[name] = new Chart(canvas, {
      type: 'line', data: { datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: true,
        interaction: { mode: 'nearest', intersect: false },
        plugins: { title: { display: true, text: opts.title }, legend: { position: 'bottom' } },
        scales: scales,
      },
    });
    return R.charts[name];
  }

  /* ---- the records: the last one per step and per epoch (a run resumed from an
   * older checkpoint repeats steps; the later records are the ones that count) */
  const steps = new Map(), epochs = new Map(), ckpts = [];
  let start = null, summary = null, end = null;
  for (const r of recs) {
    if (r.event === 'step') steps.set(r.step, r);
    else if (r.event === 'checkpoint') ckpts.push(r);
    else if (r.event === 'start') start = start || r;
    else if (r.event === 'summary') summary = r;
    else if (r.event === 'end') end = r;
    else if (!r.event && r.epoch !== undefined) epochs.set(r.epoch, r);
  }
  const S = Array.from(steps.values()).sort(function (a, b) { return a.step - b.step; });
  const E = Array.from(epochs.values()).sort(function (a, b) { return a.epoch - b.epoch; });
  R.counts = { step_records: S.length, epoch_records: E.length, checkpoint_records: ckpts.length };
  function pts(rows, xk, yk) {
    const out = [];
    for (const r of rows) if (typeof r[yk] === 'number' && typeof r[xk] === 'number') out.push({ x: r[xk], y: r[yk] });
    return out;
  }
  function has(rows, k) { return rows.some(function (r) { return typeof r[k] === 'number'; }); }

  /* ---- header */
  const header = el('header');
  header.appendChild(el('h1', {}, 'nntrain run report: ' + data.title));
  const meta = el('div', { class: 'meta' });
  meta.appendChild(el('span', {}, data.status));
  if (start) meta.appendChild(el('span', {}, start.ranks + ' rank' + (start.ranks === 1 ? '' : 's') +
                                          ', task ' + start.task + ', ' + start.params + ' parameters'));
  meta.appendChild(el('span', {}, 'run dir ' + data.dir));
  meta.appendChild(el('span', {}, 'written ' + data.generated));
  header.appendChild(meta);
  const figs = el('div', { class: 'figures' });
  const last = E.length ? E[E.length - 1] : null;
  function figure(label, value) {
    const f = el('div', { class: 'figure' });
    f.appendChild(el('b', {}, value));
    f.appendChild(document.createTextNode(label));
    figs.appendChild(f);
  }
  if (last) {
    figure('epochs', String(last.epoch) + (start ? ' of ' + start.epochs : ''));
    figure('train loss', fmt(last.loss));
    if (typeof last.val_accuracy === 'number') figure('validation accuracy', pct(last.val_accuracy));
    if (typeof last.test_accuracy === 'number') figure('test accuracy', pct(last.test_accuracy));
    if (typeof last.samples_per_s === 'number') figure('samples/s (last epoch)', last.samples_per_s.toFixed(0));
  }
  if (summary && summary.peak_rss_mb) figure('peak RSS per rank (MB)', summary.peak_rss_mb.map(function (v) { return v.toFixed(0); }).join(', '));
  header.appendChild(figs);
  document.body.appendChild(header);

  /* ---- curves */
  if (S.length || E.length) {
    const sec = section('curves', 'Training curves');
    const g = el('div', { class: 'grid' });
    sec.appendChild(g);
    const lossSeries = [{ label: 'train loss (step)', points: pts(S, 'step', 'loss'), radius: 0, width: 1 },
                        { label: 'train loss (epoch)', points: pts(E, 'step', 'loss'), radius: 3 }];
    if (has(E, 'val_loss')) lossSeries.push({ label: 'validation loss', points: pts(E, 'step', 'val_loss'), radius: 3 });
    if (has(E, 'test_loss')) lossSeries.push({ label: 'test loss', points: pts(E, 'step', 'test_loss'), radius: 3 });
    chart(g, 'loss', lossSeries, { title: 'Loss', xlabel: 'step', ylabel: 'loss' });
    const accKeys = ['val_accuracy', 'test_accuracy'];
    if (has(E, 'val_accuracy') || has(E, 'test_accuracy') || S.some(function (r) { return r.accuracy > 0; })) {
      const acc = [{ label: 'train accuracy (step)', points: pts(S, 'step', 'accuracy'), radius: 0, width: 1 },
                   { label: 'train accuracy (epoch)', points: pts(E, 'step', 'accuracy'), radius: 3 }];
      for (const k of accKeys)
        if (has(E, k)) acc.push({ label: k.replace('_', ' '), points: pts(E, 'step', k), radius: 3 });
      chart(g, 'accuracy', acc, { title: 'Accuracy', xlabel: 'step', ylabel: 'accuracy' });
    }
    /* rates span decades (warmup, cosine's tail, one-cycle): a log axis when all are > 0 */
    const lrs = pts(S, 'step', 'lr').concat(pts(E, 'step', 'lr'));
    const lrlog = lrs.length > 0 && lrs.every(function (p) { return p.y > 0; }) &&
                  Math.max.apply(null, lrs.map(function (p) { return p.y; })) >
                  1.5 * Math.min.apply(null, lrs.map(function (p) { return p.y; }));
    chart(g, 'lr', [{ label: 'learning rate (step)', points: pts(S, 'step', 'lr'), radius: 0 },
                    { label: 'learning rate (epoch end)', points: pts(E, 'step', 'lr'), radius: 3, showLine: false }],
          { title: 'Learning rate', xlabel: 'step', ylabel: 'learning rate', ylog: lrlog, yzero: !lrlog });
    const tp = [{ label: 'samples/s (between step records)', points: pts(S, 'elapsed_s', 'samples_per_s'), radius: 0 },
                { label: 'samples/s (epoch)', points: pts(E, 'elapsed_s', 'samples_per_s'), radius: 3, showLine: false },
                { label: 'checkpoint pause (ms)', points: pts(ckpts, 'elapsed_s', 'pause_ms'), axis: 'y2',
                  type: 'bar', color: '#c9a227' }];
    chart(g, 'throughput', tp, { title: 'Throughput and checkpoint pauses', xlabel: 'seconds since the start',
                                 ylabel: 'samples/s', y2label: 'pause (ms)' });
    const note = el('p', { class: 'note' }, S.length + ' step records, ' + E.length + ' epoch records, ' +
                    ckpts.length + ' checkpoints' + (end ? ' (step loop paused ' + fmt(end.checkpoint_pause_ms_mean, 3) +
                    ' ms per checkpoint on average)' : '') + '.');
    sec.appendChild(note);
  }

  /* ---- learning-rate range test */
  if (data.lrfind && data.lrfind.length) {
    const sec = section('lrfind', 'Learning-rate range test (nntrain lr-find)');
    const L = data.lrfind;
    chart(sec, 'lrfind', [{ label: 'loss', points: pts(L, 'lr', 'loss'), radius: 0, width: 1 },
                          { label: 'smoothed loss', points: pts(L, 'lr', 'smoothed'), radius: 0, width: 2.5 }],
          { title: 'Loss against the learning rate', xlabel: 'learning rate', ylabel: 'loss', xlog: true });
    sec.appendChild(el('p', { class: 'note' }, L.length + ' steps from ' + fmt(L[0].lr, 3) + ' to ' +
                       fmt(L[L.length - 1].lr, 3) + '; lr-find prints its suggested maximum rate.'));
  }

  /* ---- model graph */
  const tpl = document.getElementById('nn-graph-svg');
  const svgs = tpl ? tpl.content.querySelectorAll('svg') : [];
  {
    const sec = section('model', 'Model');
    const box = el('div', { id: 'graph' });
    if (svgs.length) box.appendChild(document.importNode(svgs[0], true));
    else box.appendChild(el('p', { class: 'note' }, 'No model graph (the model was not available).'));
    sec.appendChild(box);
    R.graph_nodes = box.querySelectorAll('g.node').length;
  }

  /* ---- evaluation */
  const ev = data.eval;
  if (ev && ev.confusion) {
    const k = ev.classes;
    const sec = section('evaluation', 'Evaluation on the ' + ev.set + ' set');
    sec.appendChild(el('p', { class: 'note' }, ev.count + ' samples, accuracy ' + pct(ev.accuracy) +
                       ', macro F1 ' + fmt(ev.macro_f1) + ', loss ' + fmt(ev.loss) +
                       '. Rows: true class; columns: predicted class.'));
    const t = el('table', { class: 'confusion', id: 'confusion' });
    const hr = el('tr');
    hr.appendChild(el('th', {}, 'true \\ predicted'));
    for (let j = 0; j < k; j++) hr.appendChild(el('th', {}, String(j)));
    t.appendChild(hr);
    let max = 1;
    for (const row of ev.confusion) for (const v of row) max = Math.max(max, v);
    for (let i = 0; i < k; i++) {
      const tr = el('tr');
      tr.appendChild(el('th', {}, String(i)));
      for (let j = 0; j < k; j++) {
        const v = ev.confusion[i][j];
        const a = Math.sqrt(v / max); /* perceived intensity */
        const td = el('td', { 'data-row': i, 'data-col': j }, String(v));
        td.style.background = i === j ? 'rgba(42,157,92,' + a.toFixed(3) + ')' : 'rgba(224,89,42,' + a.toFixed(3) + ')';
        if (a > 0.55) td.style.color = '#fff';
        tr.appendChild(td);
      }
      t.appendChild(tr);
    }
    sec.appendChild(t);
    const classes = [];
    for (let i = 0; i < k; i++) classes.push(String(i));
    const box = el('div', { class: 'chart' });
    const canvas = el('canvas', { id: 'chart-perclass', 'data-chart': 'perclass' });
    box.appendChild(canvas);
    sec.appendChild(box);
    R.charts.perclass = new Chart(canvas, {
      type: 'bar',
      data: { labels: classes, datasets: [
        { label: 'precision', data: ev.precision, backgroundColor: palette[0] },
        { label: 'recall', data: ev.recall, backgroundColor: palette[1] },
        { label: 'F1', data: ev.f1, backgroundColor: palette[2] }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
                 plugins: { title: { display: true, text: 'Per-class precision, recall and F1' } },
                 scales: { y: { min: 0, max: 1 }, x: { title: { display: true, text: 'class' } } } },
    });
    const pt = el('table', { id: 'perclass' });
    const h = el('tr');
    for (const c of ['class', 'precision', 'recall', 'F1', 'support']) h.appendChild(el('th', {}, c));
    pt.appendChild(h);
    for (let i = 0; i < k; i++) {
      const tr = el('tr');
      tr.appendChild(el('td', {}, String(i)));
      tr.appendChild(el('td', {}, fmt(ev.precision[i])));
      tr.appendChild(el('td', {}, fmt(ev.recall[i])));
      tr.appendChild(el('td', {}, fmt(ev.f1[i])));
      tr.appendChild(el('td', {}, String(ev.support[i])));
      pt.appendChild(tr);
    }
    sec.appendChild(pt);
  } else if (ev) {
    const sec = section('evaluation', 'Evaluation on the ' + ev.set + ' set');
    sec.appendChild(el('p', { class: 'note' }, ev.count + ' samples, loss ' + fmt(ev.loss) + '.'));
  }

  /* ---- misclassified inputs */
  if (data.misclassified && data.misclassified.length) {
    const sec = section('misclassified', 'Misclassified ' + (ev ? ev.set : 'test') + ' samples');
    sec.appendChild(el('p', { class: 'note' }, 'The first ' + data.misclassified.length +
                       ' in the data\'s order, each scaled to its own value range.'));
    const box = el('div', { class: 'pics' });
    for (const m of data.misclassified) {
      const f = el('figure');
      f.appendChild(el('img', { src: m.png, alt: 'sample ' + m.index }));
      f.appendChild(el('figcaption', {}, '#' + m.index + ': predicted ' + m.pred + ', true ' + m['true']));
      box.appendChild(f);
    }
    sec.appendChild(box);
  }

  /* ---- k-fold */
  const kf = data.kfold;
  if (kf && kf.val_accuracy) {
    const sec = section('kfold', 'k-fold cross-validation');
    sec.appendChild(el('p', { class: 'note' }, kf.folds + ' folds x ' + kf.repeats + ' repeat(s): mean validation accuracy ' +
                       pct(kf.mean_val_accuracy) + ' (std ' + pct(kf.std_val_accuracy) + '), mean validation loss ' +
                       fmt(kf.mean_val_loss) + ' (std ' + fmt(kf.std_val_loss) + ').'));
    const labels = kf.val_accuracy.map(function (_, i) { return 'r' + (Math.floor(i / kf.folds) + 1) + ' f' + (i % kf.folds + 1); });
    const box = el('div', { class: 'chart' });
    const canvas = el('canvas', { id: 'chart-kfold', 'data-chart': 'kfold' });
    box.appendChild(canvas);
    sec.appendChild(box);
    R.charts.kfold = new Chart(canvas, {
      type: 'bar',
      data: { labels: labels, datasets: [{ label: 'validation accuracy', data: kf.val_accuracy, backgroundColor: palette[0] },
                                         { label: 'validation loss', data: kf.val_loss, backgroundColor: palette[1], yAxisID: 'y2' }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
                 plugins: { title: { display: true, text: 'Each fold' } },
                 scales: { y: { min: 0, max: 1, title: { display: true, text: 'accuracy' } },
                           y2: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false },
                                 title: { display: true, text: 'loss' } } } },
    });
  }

  /* ---- the job file */
  {
    const sec = section('job', 'Job file');
    if (data.job && data.job.text !== null && data.job.text !== undefined) {
      sec.appendChild(el('p', { class: 'note' }, data.job.path));
      sec.appendChild(el('pre', { id: 'jobtext' }, data.job.text));
    } else {
      sec.appendChild(el('p', { class: 'note' }, 'The job file ' + (data.job ? data.job.path : '') + ' could not be read.'));
    }
  }

  R.ready = true;
})();
