// The page's "many targets" form: no framework, no build step, no library. It adds its own section to
// <main>, posts a CSV of targets (ra, dec[, name, sector]: the table `cutout batch` reads) as one async
// job (api/v0.1/async, IVOA UWS 1.1), follows the job with blocking polls (WAIT) and shows its progress
// from the job document's jobInfo, then links the results: the zip of every TPF and the manifest.
"use strict";

(function () {
  const API = "api/v0.1/async";            // MAST's path form (also served under tesscut/)
  const UWS = "http://www.ivoa.net/xml/UWS/v1.0";
  const WAIT_S = 10;                        // each poll blocks this long at most, waiting for a change
  const FINAL = new Set(["COMPLETED", "ERROR", "ABORTED"]);

  function el(name, attrs, children) {
    const node = document.createElement(name);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function field(label, input) {
    return el("label", {}, [label + " ", input]);
  }

  const file = el("input", { id: "jobs-file", name: "targets", type: "file", accept: ".csv,text/csv", required: "" });
  const sizeX = el("input", { id: "jobs-x", name: "x", type: "number", min: "1", step: "1", value: "10", required: "" });
  const sizeY = el("input", { id: "jobs-y", name: "y", type: "number", min: "1", step: "1", value: "10", required: "" });
  // the products the cutout form lists (index.html names them once)
  const product = el("select", { id: "jobs-product", name: "product" },
    Array.from(document.getElementById("product").options, (o) => el("option", { value: o.value }, [o.text])));
  const submit = el("button", { id: "jobs-submit", type: "submit" }, ["Run job"]);
  const progress = el("progress", { id: "jobs-progress", value: "0", max: "1", hidden: "" });
  const status = el("p", { id: "jobs-status", role: "status", "aria-live": "polite" });
  const zip = el("a", { id: "jobs-zip", href: "#", download: "" }, ["All target pixel files (zip)"]);
  const manifest = el("a", { id: "jobs-manifest", href: "#", download: "" }, ["Manifest (CSV)"]);
  const jobLink = el("a", { id: "jobs-url", href: "#" }, ["Job document (UWS XML)"]);
  const links = el("p", { id: "jobs-links", hidden: "" }, [zip, " \u00b7 ", manifest, " \u00b7 ", jobLink]);
  const form = el("form", { id: "jobs-form", autocomplete: "off" }, [
    el("fieldset", {}, [
      el("legend", {}, ["Many targets"]),
      el("p", { class: "hint" }, ["A CSV with columns ra, dec (degrees) and optional name, sector: one target " +
        "pixel file per target and hosted sector, cut as one job on the server's Dask workers."]),
      field("Targets (CSV)", file), field("Width (px)", sizeX), field("Height (px)", sizeY),
      field("Product", product),
    ]),
    submit, progress, status, links,
  ]);
  const section = el("section", { id: "jobs" }, [form]);
  (document.querySelector("main") || document.body).append(section);

  function show(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function parse(text) {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const one = (name) => doc.getElementsByTagNameNS(UWS, name)[0];
    const info = (name) => Number((doc.getElementsByTagName(name)[0] || {}).textContent || 0);
    const error = one("errorSummary");
    return {
      phase: one("phase") ? one("phase").textContent : "UNKNOWN",
      targets: info("targets"), targetsDone: info("targetsDone"), ok: info("ok"), errors: info("errors"),
      error: error ? error.textContent.trim() : "",
    };
  }

  function update(job) {
    progress.hidden = false;
    progress.max = Math.max(job.targets, 1);
    progress.value = job.targetsDone;
    let text = `${job.phase}: ${job.targetsDone} of ${job.targets} targets done` +
      ` (${job.ok} files, ${job.errors} errors)`;
    if (job.error) text += ` - ${job.error}`;
    show(text, job.phase === "ERROR" || job.phase === "ABORTED");
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return body.msg || `HTTP ${response.status}`;
    } catch (e) {
      return `HTTP ${response.status}`;
    }
  }

  async function run() {
    const body = new FormData();
    body.append("targets", file.files[0]);
    body.append("x", sizeX.value);
    body.append("y", sizeY.value);
    body.append("product", product.value);
    body.append("PHASE", "RUN");
    links.hidden = true;
    show("Sending the targets...", false);
    let response = await fetch(API, { method: "POST", body: body });  // 303 to the job, followed
    if (!response.ok) {
      show(await errorText(response), true);
      return;
    }
    const jobUrl = response.url;
    jobLink.href = jobUrl;
    let job = parse(await response.text());
    update(job);
    while (!FINAL.has(job.phase)) {
      response = await fetch(`${jobUrl}?WAIT=${WAIT_S}`);
      if (!response.ok) {
        show(await errorText(response), true);
        return;
      }
      job = parse(await response.text());
      update(job);
    }
    if (job.phase !== "ERROR") {
      zip.href = `${jobUrl}/results/result.zip`;
      manifest.href = `${jobUrl}/results/manifest.csv`;
      links.hidden = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    submit.disabled = true;
    run().catch((e) => show(String(e), true)).finally(() => { submit.disabled = false; });
  });
})();
