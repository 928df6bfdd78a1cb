// Drawing helpers of the page: the loss curve, the confusion matrix, the drawing pad.

/// The printed losses as a line on `canvas` (log scale: they fall over two decades).
export function drawCurve(canvas, losses) {
  const g = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  g.clearRect(0, 0, w, h);
  g.font = '12px system-ui, sans-serif';
  g.fillStyle = '#666';
  g.fillText('loss (every logged step, log scale)', 8, 14);
  if (losses.length === 0) return;
  const logs = losses.map((l) => Math.log10(Math.max(l, 1e-6)));
  const lo = Math.min(...logs) - 0.05;
  const hi = Math.max(...logs) + 0.05;
  const x = (i) => 40 + (i / Math.max(1, losses.length - 1)) * (w - 50);
  const y = (v) => 20 + (1 - (v - lo) / (hi - lo || 1)) * (h - 40);
  g.fillText(losses[0].toFixed(3), 2, y(logs[0]) + 4);
  g.fillText(losses[losses.length - 1].toFixed(3), 2, h - 4);
  g.strokeStyle = '#2a6';
  g.lineWidth = 2;
  g.beginPath();
  logs.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke();
}

/// Per-class accuracy and the confusion matrix (true label by row, prediction by column).
export function confusionTable(d) {
  const wrap = document.createElement('div');
  const p = document.createElement('p');
  p.textContent = d.line;
  wrap.append(p);
  const t = document.createElement('table');
  t.className = 'confusion';
  const head = t.insertRow();
  head.append(...['true \\ predicted', ...d.classes, 'accuracy'].map((c) => {
    const th = document.createElement('th');
    th.textContent = c;
    return th;
  }));
  d.confusion.forEach((row, i) => {
    const tr = t.insertRow();
    const th = document.createElement('th');
    th.textContent = d.classes[i];
    tr.append(th);
    row.forEach((n, j) => {
      const td = tr.insertCell();
      td.textContent = n;
      if (i === j) td.className = 'hit';
    });
    const total = row.reduce((a, b) => a + b, 0);
    tr.insertCell().textContent = total ? `${(100 * row[i] / total).toFixed(1)} %` : '–';
  });
  wrap.append(t);
  return wrap;
}

/// Clears `canvas` to black and lets the pointer draw white strokes on it, as MNIST's digits
/// are white on black.
export function setupPad(canvas) {
  const g = canvas.getContext('2d', { willReadFrequently: true });
  g.fillStyle = '#000';
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.strokeStyle = '#fff';
  g.lineWidth = canvas.width / 14;
  g.lineCap = 'round';
  g.lineJoin = 'round';
  if (canvas.dataset.ready) return;
  canvas.dataset.ready = '1';
  let last = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener('pointerdown', (e) => { last = at(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = at(e);
    const c = canvas.getContext('2d');
    c.beginPath();
    c.moveTo(...last);
    c.lineTo(...p);
    c.stroke();
    last = p;
  });
  const end = () => { last = null; };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
}
