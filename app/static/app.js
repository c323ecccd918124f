// The preview page: no framework, no build step. Everything is built from the form's values;
// the URLs are relative to this page, so the page works behind a path prefix too.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("cutout-form");
  const fields = {
    ra: $("ra"), dec: $("dec"), x: $("size-x"), y: $("size-y"),
    product: $("product"), sector: $("sector"), stretch: $("stretch"), invert: $("invert"),
    timeMin: $("time-min"), timeMax: $("time-max"), frameBin: $("frame-bin"),
  };
  // the server's default product: the product list's first option (index.html lists them once)
  const DEFAULT_PRODUCT = fields.product.options[0].value;
  const preview = $("preview");
  const lightcurveView = window.lightcurveView;  // static/lightcurve.js, loaded first
  const statusLine = $("status");
  const API = "tesscut/api/v0.1/";           // astroquery's path (MAST also serves /api/v0.1/)
  const PREVIEW_SCALE_MIN = 240;             // CSS pixels: small cutouts are shown enlarged
  let sectorRequest = 0;

  function absolute(relative) {
    return new URL(relative, document.baseURI).href;
  }

  function serverRoot() {
    // What astroquery calls the MAST server: this page's URL without a trailing slash.
    return absolute(".").replace(/\/$/, "");
  }

  function hidePreview() {
    // No image, and no caption describing one (an old caption would describe another cutout).
    preview.hidden = true;
    $("preview-caption").textContent = "";
  }

  function setStatus(text, isError) {
    statusLine.textContent = text || "";
    statusLine.className = isError ? "error" : "";
  }

  function values() {
    const num = (el) => (el.value.trim() === "" ? NaN : Number(el.value));
    return {
      ra: num(fields.ra), dec: num(fields.dec),
      x: Math.round(num(fields.x)), y: Math.round(num(fields.y)),
      product: fields.product.value, sector: fields.sector.value,
      stretch: fields.stretch.value, invert: fields.invert.checked,
      time_min: fields.timeMin.value.trim(), time_max: fields.timeMax.value.trim(),
      frame_bin: fields.frameBin.value.trim() === "1" ? "" : fields.frameBin.value.trim(),
    };
  }

  function frameParams(v) {
    // The time window and binning (extensions over TESScut), only when set.
    return { time_min: v.time_min, time_max: v.time_max, frame_bin: v.frame_bin };
  }

  function valid(v) {
    return Number.isFinite(v.ra) && Number.isFinite(v.dec) && v.dec >= -90 && v.dec <= 90
      && v.x >= 1 && v.y >= 1;
  }

  function query(params) {
    // Values here are numbers and fixed words: no characters that need escaping beyond what
    // URLSearchParams does.
    const q = new URLSearchParams();
    for (const [k, val] of Object.entries(params)) {
      if (val !== "" && val !== null && val !== undefined) q.append(k, String(val));
    }
    return q.toString();
  }

  function cutoutParams(v, withSector) {
    const p = { ra: v.ra, dec: v.dec, x: v.x, y: v.y, units: "px", ...frameParams(v) };
    if (withSector && v.sector) p.sector = v.sector;
    if (v.product !== DEFAULT_PRODUCT) p.product = v.product;
    return p;
  }

  function zipName(v) {
    return `astrocut_${v.ra.toFixed(6)}_${v.dec.toFixed(6)}_${v.x}x${v.y}.zip`;
  }

  function pythonCode(v) {
    const lines = [
      "from astropy.coordinates import SkyCoord",
      "from astroquery.mast import Tesscut",
      "from astroquery.mast.services import ServiceAPI",
      "",
      "# point astroquery at this server instead of MAST",
      `ServiceAPI.SERVICE_URL = "${serverRoot()}"`,
      "Tesscut.__init__()",
      `coord = SkyCoord(${v.ra}, ${v.dec}, unit="deg")`,
    ];
    const sector = v.sector ? `, sector=${v.sector}` : "";
    // astroquery takes (ny, nx)
    lines.push(`manifest = Tesscut.download_cutouts(coordinates=coord, size=[${v.y}, ${v.x}]${sector})`);
    if (v.product !== DEFAULT_PRODUCT) {
      lines.push(`# astroquery >= 0.4.11 asks only for ${DEFAULT_PRODUCT}; for ${v.product} use the curl command.`);
    }
    if (v.time_min || v.time_max || v.frame_bin) {
      lines.push("# astroquery cannot send the time window or the binning: use the curl command for them.");
    }
    return lines.join("\n");
  }

  function updateTexts() {
    const v = values();
    if (!valid(v)) {
      setStatus("Enter a position (RA, Dec in degrees) and a size of at least 1 px.", true);
      return false;
    }
    const zipUrl = absolute(API + "astrocut?" + query(cutoutParams(v, true)));
    const allUrl = absolute(API + "astrocut?" + query(cutoutParams(v, false)));
    $("download-zip").href = zipUrl;
    $("download-zip").setAttribute("download", zipName(v));
    $("download-all").href = allUrl;
    const option = fields.sector.selectedOptions[0];
    const wcs = $("wcs-link");
    if (option && option.dataset.camera) {
      wcs.href = absolute(API + "ffi_wcs?" + query({
        sector: v.sector, camera: option.dataset.camera, ccd: option.dataset.ccd,
        product: v.product !== DEFAULT_PRODUCT ? v.product : "",
      }));
      wcs.hidden = false;
    } else {
      wcs.hidden = true;
    }
    $("curl-cmd").textContent = `curl -o ${zipName(v)} '${zipUrl}'`;
    $("astroquery-code").textContent = pythonCode(v);
    return true;
  }

  function showPreview() {
    if (!updateTexts()) return;
    const v = values();
    if (!v.sector) {
      hidePreview();
      lightcurveView.hide();
      return;
    }
    lightcurveView.update(v);  // the light curve and frames of the same cutout (lightcurve.js)
    const url = absolute("preview/cube.png?" + query({
      ra: v.ra, dec: v.dec, x: v.x, y: v.y, sector: v.sector, product: v.product,
      stretch: v.stretch, invert: v.invert ? "true" : "",
    }));
    const scale = Math.max(1, Math.floor(PREVIEW_SCALE_MIN / Math.max(v.x, v.y)));
    setStatus("Rendering the preview ...");
    preview.onload = () => {
      preview.hidden = false;
      preview.style.width = `${preview.naturalWidth * scale}px`;  // CSS: at most the box, height follows
      $("preview-caption").textContent =
        `Sector ${v.sector} ${v.product}: median frame, ${preview.naturalWidth} x ${preview.naturalHeight} px, ${v.stretch}`;
      setStatus("");
    };
    preview.onerror = () => {
      hidePreview();
      // The <img> does not expose the error body: ask again to show the server's message.
      fetch(url).then((r) => r.json()).then((body) => {
        setStatus(body.msg || "The preview could not be made.", true);
      }).catch(() => setStatus("The preview could not be made.", true));
    };
    preview.src = url;
  }

  async function loadSectors() {
    const v = values();
    if (!valid(v)) { updateTexts(); return; }
    const mine = ++sectorRequest;
    const previous = fields.sector.value;
    setStatus("Looking up hosted sectors ...");
    let body;
    try {
      const r = await fetch(absolute(API + "sector?" + query({ ra: v.ra, dec: v.dec, product: v.product })));
      body = await r.json();
      if (!r.ok) throw new Error(body.msg || `HTTP ${r.status}`);
    } catch (err) {
      if (mine === sectorRequest) setStatus(`Sector look-up failed: ${err.message}`, true);
      return;
    }
    if (mine !== sectorRequest) return;  // a newer look-up is under way
    fields.sector.replaceChildren();
    const rows = body.results || [];
    for (const row of rows) {
      const opt = document.createElement("option");
      opt.value = String(Number(row.sector));
      opt.textContent = `${Number(row.sector)} (camera ${row.camera}, CCD ${row.ccd})`;
      opt.dataset.camera = row.camera;
      opt.dataset.ccd = row.ccd;
      fields.sector.appendChild(opt);
    }
    if (!rows.length) {
      const opt = document.createElement("option");
      opt.value = "";
      opt.textContent = "(no hosted sector here)";
      fields.sector.appendChild(opt);
      setStatus(body.msg || "No hosted sector contains this position.", true);
      updateTexts();
      hidePreview();
      lightcurveView.hide();
      return;
    }
    if ([...fields.sector.options].some((o) => o.value === previous)) fields.sector.value = previous;
    setStatus("");
    showPreview();
  }

  let timer = null;
  function later(fn) {
    clearTimeout(timer);
    timer = setTimeout(fn, 300);
  }

  for (const el of [fields.ra, fields.dec]) el.addEventListener("input", () => later(loadSectors));
  fields.product.addEventListener("change", loadSectors);
  for (const el of [fields.x, fields.y]) el.addEventListener("input", () => later(showPreview));
  for (const el of [fields.sector, fields.stretch, fields.invert]) el.addEventListener("change", showPreview);
  for (const el of [fields.timeMin, fields.timeMax, fields.frameBin]) el.addEventListener("input", () => later(showPreview));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); loadSectors(); });

  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", () => {
      const text = $(button.dataset.target).textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
  }

  loadSectors();
})();
