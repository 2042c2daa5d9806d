/* Pose pipeline: browser page. Plain DOM, no framework; server text only via textContent. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const FINAL = new Set(["completed", "failed", "cancelled"]);
  const MAX_STREAMS = 4; // browsers allow ~6 connections per host; keep some for uploads and videos
  const STATUS_TEXT = { queued: "Queued", processing: "Processing", completed: "Completed", failed: "Failed", cancelled: "Cancelled" };
  const STAGE_TEXT = { queued: "waiting", planned: "getting ready", extract: "reading frames", analyze: "finding poses",
    render: "making the video", completed: "done", failed: "failed", cancelled: "cancelled" };
  const CHUNK_TEXT = { queued: "waiting", processing: "working", completed: "done", failed: "failed" };
  const jobs = new Map(); // id -> {el, job, es, timer, live, shown:Set}
  let limits = null;
  let uploading = false;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  const ApiError = (message, status) => Object.assign(new Error(message), { status });

  async function detailOf(res) {
    try { const body = await res.json(); if (body && body.detail) return String(body.detail); } catch (_) { /* not JSON */ }
    return `The server answered ${res.status} ${res.statusText}`.trim();
  }

  async function api(path, opts = {}) {
    let res;
    try { res = await fetch(path, { credentials: "same-origin", ...opts }); }
    catch (_) { throw ApiError("The server could not be reached.", 0); }
    if (res.status === 401) { showLogin(); throw ApiError("Please sign in first.", 401); }
    if (!res.ok) throw ApiError(await detailOf(res), res.status);
    return res.status === 204 ? null : res.json();
  }

  const seconds = (s) => (s < 90 ? `${Math.max(1, Math.round(s))} s` : `${Math.round(s / 60)} min`);
  function formatBytes(n) {
    const units = ["bytes", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }
  function formatTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function progressText(x) {
    const parts = [`${Math.round((x.progress || 0) * 100)}%`];
    if (x.chunks_total) parts.push(`${x.chunks_done || 0}/${x.chunks_total} chunks`);
    if (!FINAL.has(x.status) && x.eta_s !== null && x.eta_s !== undefined) parts.push(`about ${seconds(x.eta_s)} left`);
    return parts.join(" · ");
  }

  /* ---------- engines / health ---------- */
  async function checkHealth() {
    const state = $("engine-state");
    try {
      const h = await api("/api/health");
      limits = h.limits || null;
      state.dataset.state = h.engines;
      state.textContent = { starting: "Engines starting…", ready: "Ready", failed: "Engines failed to start" }[h.engines] || "";
      if (limits) $("upload-hint").textContent =
        `Up to ${limits.max_files} files, ${formatBytes(limits.max_upload_bytes)} in total. Types: ${(limits.accept || []).join(", ")}`;
      if (h.engines === "starting") setTimeout(checkHealth, 3000);
    } catch (_) {
      state.dataset.state = "offline";
      state.textContent = "Server not reachable";
      setTimeout(checkHealth, 5000);
    }
  }

  /* ---------- sign in ---------- */
  function showLogin() {
    if ($("login").hidden) { $("login").hidden = false; $("token-input").focus(); }
  }
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("token-input");
    const token = input.value;
    input.value = ""; // never keep the token around
    $("login-error").textContent = "";
    $("login-button").disabled = true;
    try {
      const res = await fetch("/api/login", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }) });
      if (res.status === 401) throw new Error("That token is not right. Please try again.");
      if (!res.ok) throw new Error(await detailOf(res));
      $("login").hidden = true;
      checkHealth();
      loadJobs();
    } catch (err) {
      $("login-error").textContent = err.message || "Could not sign in.";
      input.focus();
    } finally {
      $("login-button").disabled = false;
    }
  });

  /* ---------- upload ---------- */
  function checkFiles(files) {
    if (!files.length) return "No files were chosen.";
    if (!limits) return null;
    if (limits.max_files && files.length > limits.max_files) return `Please choose at most ${limits.max_files} files at once.`;
    const accept = (limits.accept || []).map((a) => a.toLowerCase());
    for (const f of files) {
      const dot = f.name.lastIndexOf(".");
      const ext = dot >= 0 ? f.name.slice(dot).toLowerCase() : "";
      if (accept.length && !accept.includes(ext)) return `"${f.name}" is not a supported video type (${accept.join(", ")}).`;
    }
    const total = files.reduce((n, f) => n + f.size, 0);
    if (limits.max_upload_bytes && total > limits.max_upload_bytes)
      return `These files are too large (${formatBytes(total)}); the limit is ${formatBytes(limits.max_upload_bytes)} in total.`;
    return null;
  }

  function setUpload(text, pct) {
    $("upload-text").textContent = text;
    const bar = $("upload-progress");
    bar.hidden = pct === null;
    if (pct !== null) bar.value = pct;
  }

  function upload(fileList) {
    const files = Array.from(fileList || []);
    const errBox = $("upload-error");
    errBox.textContent = "";
    if (uploading) { errBox.textContent = "Please wait until the current upload has finished."; return; }
    const problem = checkFiles(files);
    if (problem) { errBox.textContent = problem; return; }
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const xhr = new XMLHttpRequest();
    const what = files.length === 1 ? `"${files[0].name}"` : `${files.length} files`;
    const done = () => { uploading = false; $("choose-files").disabled = false; };
    uploading = true;
    $("choose-files").disabled = true;
    setUpload(`Uploading ${what}…`, 0);
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = Math.round((e.loaded / e.total) * 100);
      setUpload(`Uploading ${what}… ${pct}% (${formatBytes(e.loaded)} of ${formatBytes(e.total)})`, pct);
    });
    xhr.upload.addEventListener("load", () => setUpload("Upload finished, creating the job…", 100));
    xhr.addEventListener("load", () => {
      done();
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      setUpload("", null);
      if (xhr.status === 201 && body && body.id) { addJob(body, true); return; }
      if (xhr.status === 401) { showLogin(); errBox.textContent = "Please sign in, then add the videos again."; return; }
      errBox.textContent = (body && body.detail) || `Upload failed (the server answered ${xhr.status}).`;
    });
    const fail = () => { done(); setUpload("", null); errBox.textContent = "Upload failed: the server could not be reached."; };
    xhr.addEventListener("error", fail);
    xhr.addEventListener("abort", fail);
    xhr.open("POST", "/api/jobs");
    xhr.send(form);
  }

  const zone = $("drop-zone");
  const input = $("file-input");
  $("choose-files").addEventListener("click", () => input.click());
  input.addEventListener("change", () => { upload(input.files); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; zone.classList.add("dragover"); });
  zone.addEventListener("dragleave", (e) => { if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragover"); });
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("dragover"); upload(e.dataTransfer.files); });
  // A file dropped outside the zone would otherwise make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  /* ---------- job cards ---------- */
  function chunkStrip(video) {
    const chunks = video.chunks || [];
    const counts = {};
    const strip = el("div", { class: "chunks", role: "img" });
    for (const c of chunks) {
      counts[c.status] = (counts[c.status] || 0) + 1;
      const tip = `Part ${c.index + 1}: ${CHUNK_TEXT[c.status] || c.status}${c.reused ? " (reused)" : ""}${c.attempts > 1 ? `, try ${c.attempts}` : ""}`;
      strip.append(el("span", { class: `chunk chunk-${c.status}${c.reused ? " reused" : ""}`, title: tip }));
    }
    const summary = Object.entries(counts).map(([s, n]) => `${n} ${CHUNK_TEXT[s] || s}`).join(", ");
    strip.setAttribute("aria-label", `Parts: ${summary || "none yet"}`);
    return strip;
  }

  function videoRow(v) {
    const frames = v.frames_total ? ` · ${v.frames_done || 0}/${v.frames_total} frames` : "";
    return el("div", { class: "video" },
      el("div", { class: "video-line" },
        el("span", { class: "video-name", text: v.filename }),
        el("span", { class: "video-stage", text: `${STAGE_TEXT[v.stage] || v.stage || ""}${frames}` })),
      chunkStrip(v),
      v.error ? el("p", { class: "error", text: v.error }) : null);
  }

  function resultBlock(v) {
    const block = el("div", { class: "result", "data-video-id": v.id }, el("h4", { text: v.filename }));
    const s = v.summary;
    if (s) block.append(el("p", { class: "summary",
      text: `People found: ${s.persons} · Frames: ${s.frames}${s.elapsed_s ? ` · Took ${seconds(s.elapsed_s)}` : ""}` }));
    const files = v.files || [];
    const movie = files.find((f) => f.output === "annotated_video");
    const report = files.find((f) => f.output === "report");
    let player = null;
    if (movie) {
      player = el("video", { class: "annotated", controls: true, muted: true, playsinline: true, preload: "metadata",
        src: movie.url, "aria-label": `Annotated video for ${v.filename}` });
      player.muted = true;
      block.append(player);
    }
    if (report) {
      block.append(el("p", {}, el("a", { href: report.url, target: "_blank", rel: "noopener", text: "Open report" })));
      const frame = el("iframe", { class: "report", src: report.url, loading: "lazy", title: `Report for ${v.filename}`,
        sandbox: "allow-scripts allow-popups allow-downloads" });
      block.append(el("details", { class: "report-toggle" }, el("summary", { text: "Show report" }), frame));
    }
    const list = el("ul", { class: "downloads", "aria-label": `Downloads for ${v.filename}` });
    for (const f of files) {
      const isHtml = f.output === "report" || /\.html?$/i.test(f.filename || "");
      list.append(el("li", {}, el("a", { href: f.url, download: isHtml ? null : f.filename || true, text: `${f.label} (${f.filename})` })));
    }
    if (files.length) block.append(el("p", { class: "downloads-title", text: "Downloads:" }), list);
    return { block, player };
  }

  function buildCard(job) {
    return el("li", { class: "job", "data-job-id": job.id },
      el("div", { class: "job-head" }, el("h3", { class: "job-title" }), el("span", { class: "status" })),
      el("p", { class: "job-meta" }, el("time", { datetime: job.created_at, text: `Added ${formatTime(job.created_at)}` })),
      el("div", { class: "job-progress-row" },
        el("progress", { class: "job-progress", max: 100, value: 0 }),
        el("span", { class: "progress-text", "aria-live": "polite" })),
      el("div", { class: "job-error-slot" }),
      el("div", { class: "videos" }),
      el("div", { class: "results", hidden: true }),
      el("div", { class: "actions" }));
  }

  function render(entry, job) {
    entry.job = job;
    const li = entry.el;
    const names = (job.videos || []).map((v) => v.filename).join(", ") || `Job ${job.id}`;
    li.dataset.status = job.status;
    li.querySelector(".job-title").textContent = names;
    const status = li.querySelector(".status");
    status.textContent = STATUS_TEXT[job.status] || job.status;
    status.dataset.status = job.status;
    const pct = Math.round((job.progress || 0) * 100);
    const bar = li.querySelector(".job-progress");
    bar.value = pct;
    bar.setAttribute("aria-label", `Progress for ${names}`);
    li.querySelector(".progress-text").textContent = progressText(job);
    li.querySelector(".job-error-slot").replaceChildren(job.error ? el("p", { class: "error", text: job.error }) : "");
    li.querySelector(".videos").replaceChildren(...(job.videos || []).map(videoRow));

    const results = li.querySelector(".results");
    for (const v of job.videos || []) {
      if (!(v.files || []).length || entry.shown.has(v.id)) continue;
      entry.shown.add(v.id);
      const { block, player } = resultBlock(v);
      results.append(block);
      results.hidden = false;
      if (player && entry.live) { const p = player.play(); if (p && p.catch) p.catch(() => {}); }
    }

    const actions = li.querySelector(".actions");
    if (FINAL.has(job.status)) actions.replaceChildren();
    else if (!actions.querySelector(".cancel")) {
      const btn = el("button", { type: "button", class: "cancel", text: "Cancel", "aria-label": `Cancel ${names}` });
      btn.addEventListener("click", () => cancelJob(entry, btn));
      actions.append(btn);
    }
  }

  async function cancelJob(entry, btn) {
    btn.disabled = true;
    try { render(entry, await api(`/api/jobs/${encodeURIComponent(entry.job.id)}/cancel`, { method: "POST" })); }
    catch (err) {
      entry.el.querySelector(".job-error-slot").replaceChildren(el("p", { class: "error", text: err.message }));
      btn.disabled = false;
    }
  }

  /* ---------- following live progress ---------- */
  const streamsOpen = () => [...jobs.values()].filter((e) => e.es).length;

  function follow(entry) {
    if (FINAL.has(entry.job.status)) return;
    if (typeof EventSource === "undefined" || streamsOpen() >= MAX_STREAMS) { poll(entry); return; }
    const es = new EventSource(`/api/jobs/${encodeURIComponent(entry.job.id)}/events`);
    entry.es = es;
    es.addEventListener("job", (e) => { try { render(entry, JSON.parse(e.data)); } catch (_) { /* ignore bad event */ } });
    es.addEventListener("end", () => { es.close(); entry.es = null; });
    es.addEventListener("error", () => {
      if (entry.es !== es) return;
      es.close(); entry.es = null;
      if (!FINAL.has(entry.job.status)) poll(entry);
    });
  }

  function poll(entry) {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(async () => {
      if (!jobs.has(entry.job.id)) return;
      try { render(entry, await api(`/api/jobs/${encodeURIComponent(entry.job.id)}`)); }
      catch (err) { if (err.status === 401 || err.status === 404) return; }
      if (!FINAL.has(entry.job.status)) poll(entry);
    }, 1000);
  }

  function stopAll() {
    for (const e of jobs.values()) { if (e.es) e.es.close(); clearTimeout(e.timer); }
    jobs.clear();
  }

  function addJob(job, atTop) {
    if (jobs.has(job.id)) { render(jobs.get(job.id), job); return; }
    const entry = { el: buildCard(job), job, es: null, timer: null, live: atTop || !FINAL.has(job.status), shown: new Set() };
    jobs.set(job.id, entry);
    render(entry, job);
    const list = $("jobs");
    if (atTop) list.prepend(entry.el); else list.append(entry.el);
    $("jobs-empty").hidden = true;
    follow(entry);
  }

  async function loadJobs() {
    stopAll();
    $("jobs").replaceChildren();
    const empty = $("jobs-empty");
    empty.hidden = false;
    empty.textContent = "Loading jobs…";
    try {
      const data = await api("/api/jobs?limit=50");
      empty.textContent = "No jobs yet. Add a video above to start.";
      for (const job of data.jobs || []) addJob(job, false);
    } catch (err) {
      empty.textContent = err.status === 401 ? "Sign in to see your jobs." : `Could not load jobs: ${err.message}`;
    }
  }

  checkHealth();
  loadJobs();
})();
