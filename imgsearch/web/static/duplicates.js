// imgsearch Duplicates page: groups of copies (GET /api/duplicates), each shown side by side.
// Every text from the server goes into the page through textContent, never as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function api(path) {
  const response = await fetch(path);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Bidirectional controls (U+202E and kin) in a file name are shown as codes, not obeyed.
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

function visible(text) {
  return text == null ? "" : String(text).replace(BIDI_CONTROLS,
    (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

function say(text, isError = false) {
  const node = $("#dup-summary");
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

function kilobytes(bytes) {
  return bytes == null ? "" : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

// -- the form: method and threshold, kept in the address so a reload or a link shows the same --

function explainThreshold() {
  const byModel = Boolean($("#dup-method").value);
  $("#dup-threshold-label").textContent = byModel ? "Cosine at least" : "Bits that may differ";
  $("#dup-threshold").placeholder = byModel ? "required, e.g. 0.98" : "default";
  $("#dup-threshold-help").textContent = byModel
    ? "Two images are copies when the model's vectors have at least this cosine similarity (0 to 1)."
    : "Two images are copies when their 64-bit perceptual hashes (or one's and the other's mirror image's) "
      + "differ in at most this many bits. Identical files are always grouped.";
}

function fromAddress() {
  const asked = new URLSearchParams(location.search);
  const model = asked.get("model") || "";
  if ([...$("#dup-method").options].some((o) => o.value === model)) $("#dup-method").value = model;
  $("#dup-threshold").value = asked.get("threshold") || "";
  explainThreshold();
}

function query() {
  const params = new URLSearchParams();
  if ($("#dup-method").value) params.set("model", $("#dup-method").value);
  if ($("#dup-threshold").value.trim()) params.set("threshold", $("#dup-threshold").value.trim());
  return params.toString();
}

async function find() {
  const asked = query();
  history.replaceState(null, "", `${location.pathname}${asked ? `?${asked}` : ""}`);
  say("Looking for duplicates… (the first time, every image is hashed)");
  $("#groups").replaceChildren();
  let report;
  try {
    report = await api(`/api/duplicates${asked ? `?${asked}` : ""}`);
  } catch (error) {
    say(error.message, true);
    return;
  }
  show(report);
}

// -- the groups -------------------------------------------------------------------------------

function show(report) {
  const how = report.model ? `${report.model} vectors, cosine at least ${report.threshold}`
    : `perceptual hash, at most ${plural(report.threshold, "bit")} of 64 apart`;
  const shown = report.groups.length < report.groups_total ? ` (the largest ${report.groups.length} shown)` : "";
  const skipped = report.skipped.length ? `; ${plural(report.skipped.length, "image")} could not be read` : "";
  say(report.groups_total
    ? `${plural(report.groups_total, "group")}${shown}, ${plural(report.duplicates, "duplicate")} among `
      + `${plural(report.images, "image")} (${how})${skipped}.`
    : `No duplicates among ${plural(report.images, "image")} (${how})${skipped}.`);
  $("#groups").replaceChildren(...report.groups.map((group, i) => groupView(group, i + 1)));
}

function groupView(group, number) {
  const what = group.exact ? "identical files" : "near copies";
  return el("section", { class: "dup-group", "aria-label": `Group ${number}` },
    el("h2", { text: `Group ${number} ` }, el("span", { class: "muted", text: `· ${group.size} ${what}` })),
    el("div", { class: "dup-row" }, ...group.images.map(memberView)));
}

function memberView(image) {
  const size = image.width && image.height ? `${image.width} × ${image.height}` : "";
  return el("figure", { class: "card", title: visible(image.path) },
    el("a", { class: "thumb", href: image.file, target: "_blank", rel: "noopener" },
      el("img", { src: image.thumb, alt: visible(image.name), loading: "lazy" })),
    el("figcaption", {},
      el("span", { class: "name", text: visible(image.name) }),
      el("span", { class: "facts", text: [size, kilobytes(image.size)].filter(Boolean).join(" · ") })));
}

async function start() {
  try {
    const models = await api("/api/models");
    $("#dup-method").append(...models.map((m) => el("option", { value: m.spec, text: `${m.spec} vectors` })));
  } catch (error) {
    say(error.message, true);
    return;
  }
  fromAddress();
  $("#dup-method").addEventListener("change", explainThreshold);
  $("#dup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    find();
  });
  find();
}

start();
