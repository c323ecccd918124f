// The light-curve view of the preview page: no framework, no build step, no library. app.js calls
// window.lightcurveView.update(values) whenever the cutout shown changes, and .hide() when there is
// none. This file draws the simple-aperture light curve (api/v0.1/lightcurve) as an inline SVG,
// quality-flagged cadences in another colour, and a frame slider over the cutout
// (preview/frames.png), with the aperture drawn over the frame: clicking a pixel toggles it.
"use strict";

window.lightcurveView = (function () {
  const $ = (id) => document.getElementById(id);
  const section = $("lightcurve");
  const plot = $("lc-plot");
  const caption = $("lc-caption");
  const slider = $("frame-slider");
  const frameImg = $("frame");
  const overlay = $("aperture-overlay");
  const frameLabel = $("frame-label");
  const playButton = $("play");
  const apertureInput = $("aperture");
  const SVG = "http://www.w3.org/2000/svg";
  const API = "api/v0.1/";                  // MAST's path form (also served under tesscut/)
  const FRAME_SCALE_MIN = 240;              // CSS pixels: small cutouts are shown enlarged
  const PLAY_DELAY_MS = 150;                // pause between frames while playing
  const BOX = { w: 720, h: 300, left: 90, right: 16, top: 14, bottom: 48 };  // the plot's viewBox
  const MAX_LINK_URL = 8000;                // longer GET URLs fail in servers and proxies: POST instead

  let target = null;      // what app.js shows: {ra, dec, x, y, sector, product, stretch, invert}
  let mask = null;        // the aperture: target.y rows of target.x booleans, row 0 the lowest cube row
  let maskFor = "";       // the cutout shape and side the mask was made for
  let curve = null;       // the last light-curve answer
  let curveKey = "";      // the request it answers
  let curveRequest = 0;   // a newer request makes older answers stale
  let wanted = 0;         // the frame the slider asks for
  let shownUrl = "";      // the frame image loaded
  let busy = false;       // a frame is loading: one at a time, the latest wins
  let playing = false;
  let playTimer = null;
  let editTimer = null;
  let jsonBlobUrl = "";   // the light curve's JSON as a blob: URL, when its GET URL would be too long

  function absolute(relative) {
    return new URL(relative, document.baseURI).href;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, val] of Object.entries(params)) {
      if (val !== "" && val !== null && val !== undefined) q.append(k, String(val));
    }
    return q.toString();
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- the aperture --------------------------------------------------------------------------

  function side() {
    const n = Math.round(Number(apertureInput.value));
    return Number.isFinite(n) && n >= 1 ? n : 1;
  }

  function centralMask(nx, ny, k) {
    // The central k x k pixels of the cutout (k clipped to the cutout).
    const kx = Math.min(k, nx), ky = Math.min(k, ny);
    const x0 = Math.floor((nx - kx) / 2), y0 = Math.floor((ny - ky) / 2);
    const rows = [];
    for (let r = 0; r < ny; r++) {
      const row = [];
      for (let c = 0; c < nx; c++) row.push(r >= y0 && r < y0 + ky && c >= x0 && c < x0 + kx);
      rows.push(row);
    }
    return rows;
  }

  function maskText() {
    // The API's mask: rows of 0/1 in array order (the first row is the lowest cube row).
    return mask.map((row) => row.map((b) => (b ? "1" : "0")).join("")).join(",");
  }

  function maskPixels() {
    return mask.reduce((n, row) => n + row.filter(Boolean).length, 0);
  }

  function drawOverlay() {
    overlay.replaceChildren();
    if (!target || !mask) return;
    const nx = target.x, ny = target.y;
    overlay.setAttribute("viewBox", `0 0 ${nx} ${ny}`);
    overlay.setAttribute("preserveAspectRatio", "none");  // the overlay has the frame's shape
    for (let r = 0; r < ny; r++) {
      for (let c = 0; c < nx; c++) {
        if (!mask[r][c]) continue;
        // north up: the image's top row is the cutout's last row
        overlay.appendChild(el("rect", { x: c, y: ny - 1 - r, width: 1, height: 1, class: "ap" }));
      }
    }
  }

  overlay.addEventListener("click", (ev) => {
    if (!target || !mask) return;
    const box = overlay.getBoundingClientRect();
    const c = Math.floor(((ev.clientX - box.left) / box.width) * target.x);
    const rowFromTop = Math.floor(((ev.clientY - box.top) / box.height) * target.y);
    const r = target.y - 1 - rowFromTop;
    if (c < 0 || c >= target.x || r < 0 || r >= target.y) return;
    mask[r][c] = !mask[r][c];
    drawOverlay();
    clearTimeout(editTimer);
    editTimer = setTimeout(loadCurve, 250);
  });

  apertureInput.addEventListener("input", () => {
    if (!target) return;
    maskFor = "";
    clearTimeout(editTimer);
    editTimer = setTimeout(() => update(target), 300);
  });

  // -- the light curve ------------------------------------------------------------------------

  function ticks(lo, hi, count) {
    // About `count` round numbers between lo and hi.
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
    return out;
  }

  function label(value, span) {
    const digits = span > 0 ? Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(span)))) : 2;
    return value.toFixed(digits);
  }

  function scales() {
    const t = curve.time, f = curve.flux;
    const good = [];
    for (let i = 0; i < t.length; i++) if (t[i] !== null && f[i] !== null) good.push(i);
    if (!good.length) return null;
    let t0 = Infinity, t1 = -Infinity, f0 = Infinity, f1 = -Infinity;
    for (const i of good) {
      t0 = Math.min(t0, t[i]); t1 = Math.max(t1, t[i]);
      f0 = Math.min(f0, f[i]); f1 = Math.max(f1, f[i]);
    }
    if (t1 === t0) { t0 -= 0.5; t1 += 0.5; }
    const tpad = 0.02 * (t1 - t0);  // the first and last points clear of the frame
    t0 -= tpad; t1 += tpad;
    const pad = f1 > f0 ? 0.1 * (f1 - f0) : Math.max(1, Math.abs(f0) * 0.01);
    f0 -= pad; f1 += pad;
    const W = BOX.w - BOX.left - BOX.right, H = BOX.h - BOX.top - BOX.bottom;
    return {
      good, t0, t1, f0, f1,
      x: (v) => BOX.left + ((v - t0) / (t1 - t0)) * W,
      y: (v) => BOX.top + (1 - (v - f0) / (f1 - f0)) * H,
    };
  }

  function drawPlot() {
    plot.replaceChildren();
    const s = scales();
    if (!s) {
      plot.appendChild(el("text", { x: BOX.w / 2, y: BOX.h / 2, class: "empty", "text-anchor": "middle" },
        "No cadence has a finite flux in this aperture."));
      return;
    }
    const axes = el("g", { class: "axes" });
    const bottom = BOX.h - BOX.bottom, right = BOX.w - BOX.right;
    axes.appendChild(el("rect", { x: BOX.left, y: BOX.top, width: right - BOX.left, height: bottom - BOX.top,
                                  class: "frame" }));
    for (const v of ticks(s.t0, s.t1, 6)) {
      const x = s.x(v);
      axes.appendChild(el("line", { x1: x, x2: x, y1: bottom, y2: bottom + 5 }));
      axes.appendChild(el("text", { x, y: bottom + 18, "text-anchor": "middle" }, label(v, s.t1 - s.t0)));
    }
    for (const v of ticks(s.f0, s.f1, 5)) {
      const y = s.y(v);
      axes.appendChild(el("line", { x1: BOX.left - 5, x2: BOX.left, y1: y, y2: y }));
      axes.appendChild(el("text", { x: BOX.left - 8, y: y + 4, "text-anchor": "end" }, label(v, s.f1 - s.f0)));
    }
    axes.appendChild(el("text", { x: (BOX.left + right) / 2, y: BOX.h - 6, "text-anchor": "middle", class: "title" },
      `Time (${curve.time_unit})`));
    axes.appendChild(el("text", { x: 14, y: (BOX.top + bottom) / 2, "text-anchor": "middle", class: "title",
                                  transform: `rotate(-90 14 ${(BOX.top + bottom) / 2})` },
      `Flux (${curve.flux_unit})`));
    plot.appendChild(axes);
    plot.appendChild(el("line", { id: "lc-cursor", x1: -10, x2: -10, y1: BOX.top, y2: bottom }));
    const points = el("g", { class: "points" });
    // flagged points last, so that they stay visible on top of their neighbours
    const order = s.good.filter((i) => !curve.quality[i]).concat(s.good.filter((i) => curve.quality[i]));
    for (const i of order) {
      const flagged = curve.quality[i] !== 0;
      const dot = el("circle", { cx: s.x(curve.time[i]).toFixed(2), cy: s.y(curve.flux[i]).toFixed(2),
                                 r: flagged ? 4 : 3, class: flagged ? "pt flagged" : "pt good", "data-frame": i });
      dot.appendChild(el("title", {}, `frame ${i + 1}: BTJD ${curve.time[i].toFixed(5)}, flux ` +
        `${curve.flux[i].toPrecision(7)} ${curve.flux_unit}${flagged ? `, quality ${curve.quality[i]}` : ""}`));
      points.appendChild(dot);
    }
    plot.appendChild(points);
    plot.dataset.scale = JSON.stringify({ t0: s.t0, t1: s.t1 });
    moveCursor();
  }

  plot.addEventListener("click", (ev) => {
    const frame = ev.target && ev.target.dataset ? ev.target.dataset.frame : undefined;
    if (frame === undefined) return;
    slider.value = frame;
    requestFrame(Number(frame));
  });

  function moveCursor() {
    const line = $("lc-cursor");
    const s = curve && scales();
    if (!line || !s) return;
    const t = curve.time[wanted];
    const x = t === null || t === undefined ? -10 : s.x(t);
    line.setAttribute("x1", x);
    line.setAttribute("x2", x);
  }

  function drawSectors() {
    const list = $("lc-sectors");
    list.replaceChildren();
    for (const row of curve.sectors) {
      const sector = Number(row.sector);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sector-pick" + (sector === curve.sector ? " current" : "");
      button.textContent = `${sector} (camera ${row.camera}, CCD ${row.ccd})`;
      button.dataset.sector = String(sector);
      button.addEventListener("click", () => {
        const select = $("sector");
        if (select.value === String(sector)) return;
        select.value = String(sector);
        select.dispatchEvent(new Event("change"));
      });
      list.appendChild(button);
    }
  }

  function curveParams() {
    return { ra: target.ra, dec: target.dec, sector: target.sector,
             product: target.product !== document.getElementById("product").options[0].value ? target.product : "",
             mask: maskText(),
             time_min: target.time_min, time_max: target.time_max, frame_bin: target.frame_bin };
  }

  function postCurve(key) {
    // The aperture goes in a form body: a big cutout's mask (a million characters at 1000 px) does
    // not fit in a URL.
    return fetch(absolute(API + "lightcurve"), {
      method: "POST", body: key, headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
  }

  function apertureText(aperture) {
    // Where the aperture's pixels are on the cube (1-based columns and rows): the box around the
    // pixels set in the mask, not the corner of the cutout it was drawn on.
    let c0 = Infinity, c1 = -Infinity, r0 = Infinity, r1 = -Infinity;
    aperture.mask.forEach((row, r) => {
      const first = row.indexOf("1");
      if (first < 0) return;
      r0 = Math.min(r0, r); r1 = Math.max(r1, r);
      c0 = Math.min(c0, first); c1 = Math.max(c1, row.lastIndexOf("1"));
    });
    const span = (lo, hi, one, many) => (lo === hi ? `${one} ${lo}` : `${many} ${lo}-${hi}`);
    return `${span(aperture.column + c0, aperture.column + c1, "column", "columns")}, ` +
      `${span(aperture.row + r0, aperture.row + r1, "row", "rows")}`;
  }

  function setLinks(key, text, body) {
    // GET links while the URL is short; beyond, the JSON as it was answered and a CSV fetched by POST.
    const json = $("lc-json"), csv = $("lc-csv");
    const name = `lightcurve_s${body.sector}_${target.ra}_${target.dec}.csv`;
    if (jsonBlobUrl) { URL.revokeObjectURL(jsonBlobUrl); jsonBlobUrl = ""; }
    csv.setAttribute("download", name);
    const url = absolute(API + "lightcurve?" + key);
    if (url.length + "&format=csv".length <= MAX_LINK_URL) {
      json.href = url;
      csv.href = url + "&format=csv";
      csv.onclick = null;
      return;
    }
    jsonBlobUrl = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    json.href = jsonBlobUrl;
    csv.href = "#";
    csv.onclick = async (ev) => {
      ev.preventDefault();
      const r = await postCurve(key + "&format=csv");
      const save = document.createElement("a");
      save.href = URL.createObjectURL(await r.blob());
      save.download = r.ok ? name : "lightcurve_error.json";
      save.click();
      setTimeout(() => URL.revokeObjectURL(save.href), 60000);
    };
  }

  async function loadCurve() {
    if (!target) return;
    if (!maskPixels()) {
      caption.textContent = "Select at least one pixel of the frame for the aperture.";
      caption.className = "caption error";
      return;
    }
    const params = curveParams();
    const key = query(params);
    const mine = ++curveRequest;
    caption.textContent = "Summing the aperture ...";
    caption.className = "caption";
    let body, text;
    try {
      const r = await postCurve(key);
      text = await r.text();
      body = JSON.parse(text);
      if (!r.ok) throw new Error(body.msg || `HTTP ${r.status}`);
    } catch (err) {
      if (mine === curveRequest) {
        // say why, without leaving another cutout's curve and frame on show
        curve = null;
        curveKey = "";
        section.hidden = false;
        plot.replaceChildren();
        frameImg.removeAttribute("src");
        shownUrl = "";
        frameLabel.textContent = "";
        caption.textContent = `The light curve could not be made: ${err.message}`;
        caption.className = "caption error";
      }
      return;
    }
    if (mine !== curveRequest) return;  // a newer request is under way
    curve = body;
    curveKey = key;
    section.hidden = false;
    $("lc-title").textContent = `sector ${body.sector}, camera ${body.camera}, CCD ${body.ccd}`;
    setLinks(key, text, body);
    const nan = body.flux.filter((v) => v === null).length;
    caption.textContent = `${body.cadences} cadences, ${body.flagged} with a quality flag` +
      (nan ? `, ${nan} without data` : "") +
      `; aperture of ${body.aperture.pixels} px (${apertureText(body.aperture)}).`;
    drawSectors();
    drawPlot();
    slider.max = String(Math.max(0, body.cadences - 1));
    if (wanted > body.cadences - 1) wanted = 0;
    slider.value = String(wanted);
    requestFrame(wanted);
  }

  // -- the frames -----------------------------------------------------------------------------

  function cubeFrame(i) {
    // A cadence's first frame of the cube (a time window or a binning starts and steps elsewhere).
    return curve && curve.frames ? curve.frames[0] + i * curve.frame_bin : i;
  }

  function frameUrl(i) {
    return absolute("preview/frames.png?" + query({
      ra: target.ra, dec: target.dec, x: target.x, y: target.y, sector: target.sector, product: target.product,
      stretch: target.stretch, invert: target.invert ? "true" : "", frame: cubeFrame(i),
    }));
  }

  function showLabel(i) {
    if (!curve || i >= curve.cadences) { frameLabel.textContent = ""; return; }
    const t = curve.time[i], q = curve.quality[i];
    frameLabel.textContent = `Frame ${i + 1} of ${curve.cadences}` +
      (t !== null ? `, BTJD ${t.toFixed(5)}` : "") + (q ? `, quality flag ${q}` : "");
    frameLabel.className = q ? "caption flagged" : "caption";
  }

  function sizeFrame() {
    // The frame enlarged as the preview is (whole screen pixels per pixel), never wider than its
    // box (CSS max-width; the height follows); the aperture's overlay covers the frame (CSS).
    const scale = Math.max(1, Math.floor(FRAME_SCALE_MIN / Math.max(target.x, target.y)));
    frameImg.style.width = `${target.x * scale}px`;
    frameImg.style.aspectRatio = `${target.x} / ${target.y}`;
  }

  function requestFrame(i) {
    wanted = i;
    moveCursor();
    showLabel(i);
    if (!busy) loadFrame();
  }

  function loadFrame() {
    if (!target) return;
    const i = wanted;
    const url = frameUrl(i);
    if (url === shownUrl) { busy = false; schedulePlay(); return; }
    busy = true;
    frameImg.onload = () => {
      busy = false;
      shownUrl = url;
      frameImg.dataset.frame = String(i);
      if (target && frameUrl(wanted) !== url) loadFrame(); else schedulePlay();
    };
    frameImg.onerror = () => {
      busy = false;
      stop();
      frameLabel.textContent = `Frame ${i + 1} could not be shown.`;
      frameLabel.className = "caption error";
    };
    frameImg.src = url;
  }

  function schedulePlay() {
    if (!playing || !curve) return;
    clearTimeout(playTimer);
    playTimer = setTimeout(() => {
      if (!playing) return;
      const next = (wanted + 1) % curve.cadences;
      slider.value = String(next);
      requestFrame(next);
    }, PLAY_DELAY_MS);
  }

  function stop() {
    playing = false;
    clearTimeout(playTimer);
    playButton.textContent = "Play";
  }

  slider.addEventListener("input", () => requestFrame(Number(slider.value)));
  playButton.addEventListener("click", () => {
    if (playing) { stop(); return; }
    if (!curve) return;
    playing = true;
    playButton.textContent = "Pause";
    schedulePlay();
  });

  // -- what app.js calls ----------------------------------------------------------------------

  function update(values) {
    target = { ...values };
    const shape = `${target.x}x${target.y}:${side()}`;
    if (shape !== maskFor || !mask) {
      mask = centralMask(target.x, target.y, side());
      maskFor = shape;
    }
    sizeFrame();
    drawOverlay();
    if (query(curveParams()) !== curveKey) {
      loadCurve();
    } else {
      requestFrame(wanted);  // same light curve; the frames' look (stretch, invert) may differ
    }
  }

  function hide() {
    stop();
    target = null;
    curveRequest++;
    section.hidden = true;
  }

  return { update, hide };
})();
