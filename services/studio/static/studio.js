// bgm studio: upload a video, score it through the studio's API, follow the progress, play
// and compare versions, download. Plain JavaScript, no library.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { video: null, duration: 0, analysis: null, plan: null, versions: [] };

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text || value;
  select.appendChild(o);
}

async function api(path, init) {
  const response = await fetch(path, init);
  const body = await response.json().catch(() => ({ code: "INTERNAL", message: "no answer" }));
  if (!response.ok) throw body;
  return body;
}

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  const fields = (error.fields || []).length ? ` (${error.fields.join(", ")})` : "";
  box.textContent = `${error.code || "ERROR"}${fields}: ${error.message || ""}`;
  box.hidden = false;
}

async function loadChoices() {
  const choices = await api("/api/choices");
  for (const g of choices.genres) option($("genre"), g);
  for (const m of choices.moods) option($("mood"), m);
  for (const i of choices.instruments) { option($("instrument"), i); option($("negative"), i); }
  for (const k of choices.keys) option($("key"), k);
  for (const s of choices.speech) option($("speech"), s);
  // What the gateway's generator takes: a generator that makes no stems (a diffusion model's
  // audio only) refuses a score that asks for them.
  $("candidates").max = choices.candidates;
  $("stems").disabled = !choices.stems;
  $("stems").checked = choices.stems;
}

async function setVideo(entry) {
  state.video = entry;
  state.plan = null;
  // The last score's status was the last video's (a failed one's "stopped" had stayed).
  $("stage").textContent = "";
  $("score-progress").value = 0;
  $("video").src = entry.url;
  $("remove-video").hidden = false;
  $("video-name").textContent = `Video: ${entry.name} (analysing...)`;
  try {
    state.analysis = entry.analysis || await api(`/api/videos/${entry.id}/analysis`);
    drawTimeline();
    showTags(state.analysis.tags || {});
    $("video-name").textContent = `Video: ${entry.name}`;
  } catch (error) {
    $("video-name").textContent = `Video: ${entry.name}`;
    showError(error);
  }
}

function upload(file) {
  showError(null);
  const bar = $("upload-progress");
  bar.hidden = false;
  const request = new XMLHttpRequest();
  request.open("POST", "/api/videos");
  // A header holds Latin-1 only: the name goes percent-encoded (CJK or emoji had thrown here).
  request.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
  request.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  request.onload = () => {
    bar.hidden = true;
    const body = JSON.parse(request.responseText || "{}");
    if (request.status === 200) setVideo(body); else showError(body);
  };
  request.onerror = () => { bar.hidden = true; showError({ message: "the upload failed" }); };
  request.send(file);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}

function drawTimeline() {
  const root = $("timeline");
  root.replaceChildren();
  const a = state.analysis;
  if (!a) return;
  const d = a.duration_s || 1;
  const x = (t) => (1000 * t) / d;
  for (const [i, s] of (a.segments || []).entries()) {
    const r = svg("rect", { x: x(s.start_s || 0), y: 0, width: x(s.end_s) - x(s.start_s || 0),
                            height: 60, fill: i % 2 ? "#dde7f7" : "#c9d8f2" }, root);
    svg("title", {}, r).textContent = `${(s.start_s || 0).toFixed(1)}-${s.end_s.toFixed(1)} s: ${(s.moods || []).join(", ")}`;
    const label = svg("text", { x: x(s.start_s || 0) + 3, y: 14, "font-size": 12 }, root);
    label.textContent = (s.moods || []).join(", ");
  }
  const motion = a.motion || { hz: 1, values: [] };
  const points = (motion.values || []).map((v, i) => `${x(i / motion.hz)},${150 - 60 * v}`);
  if (points.length) svg("polyline", { points: points.join(" "), fill: "none", stroke: "#2d6a2d", "stroke-width": 1.5 }, root);
  for (const c of a.cuts || []) svg("line", { x1: x(c.time_s), x2: x(c.time_s), y1: 0, y2: 170, stroke: "#b30000", "stroke-width": 2 }, root);
  for (const s of a.speech || []) svg("rect", { x: x(s.start_s || 0), y: 62, width: x(s.end_s) - x(s.start_s || 0), height: 8, fill: "#8a5a00" }, root);
  const plan = state.plan;
  if (plan) {
    for (const b of plan.beats_s || []) svg("line", { x1: x(b), x2: x(b), y1: 150, y2: 160, stroke: "#444" }, root);
    for (const b of plan.bars_s || []) svg("line", { x1: x(b), x2: x(b), y1: 140, y2: 170, stroke: "#000", "stroke-width": 1.5 }, root);
    for (const s of plan.sections || []) {
      const t = svg("text", { x: x(s.start_s || 0) + 3, y: 90, "font-size": 12 }, root);
      t.textContent = `${s.role}${s.thinning ? " (room for speech)" : ""}`;
    }
  }
  const strip = $("thumbnails");
  strip.replaceChildren();
  for (const s of a.segments || []) {
    if (!s.thumbnail_jpeg) continue;
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `data:image/jpeg;base64,${s.thumbnail_jpeg}`;
    img.alt = `Segment ${(s.start_s || 0).toFixed(1)}-${s.end_s.toFixed(1)} s, ${(s.moods || []).join(", ")}`;
    figure.appendChild(img);
    strip.appendChild(figure);
  }
}

function showTags(tags) {
  const list = $("tags");
  list.replaceChildren();
  const origin = {};
  for (const o of tags.origins || []) origin[`${o.kind}:${o.tag}`] = o.source;
  for (const [kind, names] of [["genre", tags.genres], ["mood", tags.moods], ["instrument", tags.instruments]]) {
    for (const name of names || []) {
      const item = document.createElement("li");
      item.textContent = `${kind}: ${name} (${origin[`${kind}:${name}`] || "?"})`;
      list.appendChild(item);
    }
  }
}

// What a version plays, from its plan: the tags say what was asked for, the band what plays.
function showPlan(plan) {
  const list = $("version-plan");
  list.replaceChildren();
  if (!plan) return;
  const tempos = (plan.sections || []).map((s) => s.bpm);
  const spread = tempos.length && Math.max(...tempos) - Math.min(...tempos) > 0.05
    ? ` (sections ${Math.min(...tempos).toFixed(1)}-${Math.max(...tempos).toFixed(1)})` : "";
  const keys = [...new Set((plan.sections || []).map((s) => s.key).filter((k) => k && k !== plan.key))];
  const cuts = plan.alignment || {};
  const rows = [
    ["Style", plan.genre],
    ["Band", (plan.instruments || []).join(", ")],
    ["Tempo", `${(plan.bpm || 0).toFixed(1)} BPM${spread}, ${plan.meter || ""}`],
    ["Key", `${plan.key || ""}${keys.length ? ` (then ${keys.join(", ")})` : ""}`],
    ["Cuts", cuts.cut_count ? `${cuts.on_beat_count || 0} of ${cuts.cut_count} on a beat` : ""],
  ];
  for (const [name, value] of rows) {
    if (!value) continue;
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    list.append(term, detail);
  }
}

function addVersion(job, files, plan) {
  const version = { id: job, label: `Version ${state.versions.length + 1}`, files, plan };
  state.versions.push(version);
  const id = `version-${job}`;
  const wrapper = document.createElement("div");
  const input = document.createElement("input");
  input.type = "radio"; input.name = "version"; input.id = id; input.value = job;
  input.addEventListener("change", () => choose(version));
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = version.label;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${version.label}`);
  remove.addEventListener("click", async () => {
    showError(null);
    try { await api(`/api/scores/${job}`, { method: "DELETE" }); } catch (error) { showError(error); return; }
    wrapper.remove();
    state.versions = state.versions.filter((v) => v !== version);
    if (input.checked) { $("music").removeAttribute("src"); $("downloads").replaceChildren(); showPlan(null); }
  });
  wrapper.append(input, label, remove);
  $("versions").appendChild(wrapper);
  input.checked = true;
  choose(version);
}

async function removeVideo() {
  showError(null);
  try { await api(`/api/videos/${state.video.id}`, { method: "DELETE" }); } catch (error) { showError(error); return; }
  Object.assign(state, { video: null, analysis: null, plan: null });
  $("video").removeAttribute("src");
  $("video-name").textContent = "";
  $("remove-video").hidden = true;
  drawTimeline();
  $("thumbnails").replaceChildren();
  $("tags").replaceChildren();
}

function choose(version) {
  const video = $("video"), music = $("music");
  const playing = !video.paused;
  music.src = `/api/scores/${version.id}/files/music.wav`;
  showPlan(version.plan);
  music.currentTime = video.currentTime || 0;
  if (playing) music.play();
  const list = $("downloads");
  list.replaceChildren();
  for (const name of version.files) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/api/scores/${version.id}/files/${name}`;
    link.textContent = `Download ${name}`;
    link.setAttribute("download", name);
    item.appendChild(link);
    list.appendChild(item);
  }
}

function follow(job) {
  return new Promise((resolve) => {
    const source = new EventSource(`/api/scores/${job}/events`);
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "analysis") { state.analysis = event; drawTimeline(); showTags(event.tags || {}); }
      else if (event.type === "progress") { $("score-progress").value = event.fraction || 0; $("stage").textContent = `${event.stage || ""} ${Math.round(100 * (event.fraction || 0))}%`; }
      else if (event.type === "result") { state.plan = event.plan; drawTimeline(); showTags(event.tags || {}); }
      else if (event.type === "done") { $("score-progress").value = 1; $("stage").textContent = "done"; addVersion(job, event.files, state.plan); source.close(); resolve(); }
      else if (event.type === "error") { showError(event); $("stage").textContent = "stopped"; source.close(); resolve(); }
    };
    source.onerror = () => { source.close(); resolve(); };
  });
}

async function score(e) {
  e.preventDefault();
  showError(null);
  if (!state.video) { showError({ code: "INVALID_ARGUMENT", fields: ["video"], message: "choose a video first (upload one or pick the sample)" }); return; }
  const form = $("controls");
  const one = (id) => ($(id).value ? [$(id).value] : []);
  const body = {
    video_id: state.video.id, genres: one("genre"), moods: one("mood"), instruments: one("instrument"),
    negative: one("negative"), bpm: $("bpm").value || null, key: $("key").value || null,
    prompt: $("prompt").value, seed: Number($("seed").value || 0), candidates: Number($("candidates").value || 1),
    keep_original_audio: $("keep").checked, speech: $("speech").value, lufs: Number($("lufs").value || -14),
    stems: $("stems").checked,
  };
  $("score").disabled = true;
  try {
    const job = await api("/api/scores", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    await follow(job.id);
  } catch (error) { showError(error); }
  $("score").disabled = false;
  form.querySelector("select, input").focus();
}

async function restore() {
  const saved = await api("/api/state");
  if (saved.videos.length) setVideo(saved.videos[saved.videos.length - 1]);
  for (const job of saved.jobs) {
    const done = job.events.find((e) => e.type === "done");
    const analysis = job.events.find((e) => e.type === "analysis");
    const result = job.events.find((e) => e.type === "result");
    if (analysis) { state.analysis = analysis; showTags(analysis.tags || {}); }
    if (result) { state.plan = result.plan; showTags(result.tags || {}); }
    if (done) addVersion(job.id, done.files, result && result.plan);
  }
  drawTimeline();
}

function syncMusic() {
  const video = $("video"), music = $("music"), play = $("play");
  play.addEventListener("click", () => { if (video.paused) video.play(); else video.pause(); });
  video.addEventListener("play", () => { play.textContent = "Pause"; });
  video.addEventListener("pause", () => { play.textContent = "Play"; });
  video.addEventListener("play", () => { music.currentTime = video.currentTime; music.play().catch(() => {}); });
  video.addEventListener("pause", () => music.pause());
  video.addEventListener("seeked", () => { music.currentTime = video.currentTime; });
}

window.addEventListener("DOMContentLoaded", async () => {
  syncMusic();
  $("file").addEventListener("change", () => { if ($("file").files[0]) upload($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]); });
  $("sample").addEventListener("click", async () => {
    showError(null);
    try { setVideo(await api("/api/samples/sample", { method: "POST" })); } catch (error) { showError(error); }
  });
  $("controls").addEventListener("submit", score);
  $("remove-video").addEventListener("click", removeVideo);
  // The session's videos and scores come back even while the gateway cannot say what it takes.
  try { await loadChoices(); } catch (error) { showError(error); }
  try { await restore(); } catch (error) { showError(error); }
});
