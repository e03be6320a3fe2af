// imgsearch web UI: plain JS over the JSON API. Every text from the server goes into the page
// through textContent, never as HTML (file names may contain anything).
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { info: null, page: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of [].concat(value)) if (item !== undefined && item !== "") search.append(key, item);
  }
  return search.toString();
}

// Bidirectional controls (U+202E and kin) can make "cat\u202Egnp.exe" read "catexe.png": in a name
// or a path they are shown as visible codes instead of being obeyed.
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

function visible(text) {
  return text == null ? text : String(text).replace(BIDI_CONTROLS,
    (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

function say(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function humanBytes(n) {
  if (n == null) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// -- routing: #/search?q=..&model=.. | #/search?like=ID&model=.. | #/compare?q=..&model=a&model=b | #/reports

function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  return { view: ["search", "compare", "reports"].includes(path) ? path : "search", params: new URLSearchParams(search) };
}

function showView(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === view);
}

// Every search goes through the address, so Back and bookmarks work; the same address again
// fires no hashchange, so it is routed here.
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const { view, params } = parseHash();
  showView(view);
  if (view === "search") {
    const model = params.get("model");
    if (model) $("#model").value = model;
    setRefinements(params);
    if (params.get("like")) return searchSimilar(Number(params.get("like")));
    if (params.get("q")) {
      $("#q").value = params.get("q");
      return searchText($("#q").value);
    }
  } else if (view === "compare") {
    const chosen = params.getAll("model");
    if (chosen.length) {
      for (const box of document.querySelectorAll("#compare-models input")) box.checked = chosen.includes(box.value);
    }
    if (params.get("q")) {
      $("#cq").value = params.get("q");
      return compare($("#cq").value);
    }
  } else if (view === "reports") {
    return loadReports();
  }
}

// -- search ----------------------------------------------------------------------------------

function currentK() {
  return Math.min(24, state.info ? state.info.max_k : 24);
}

// -- filters and plus/minus terms: the same query parameters as /api/search and the CLI's options

const FILTER_CONTROLS = { in: "#f-in", after: "#f-after", before: "#f-before", camera: "#f-camera",
  min_score: "#f-min-score" };
const TERM_CONTROLS = { plus: "#f-plus", minus: "#f-minus" };

function splitTerms(text) {
  return text.split(",").map((term) => term.trim()).filter(Boolean);
}

function filterParams() {
  const out = {};
  for (const [key, selector] of Object.entries(FILTER_CONTROLS)) out[key] = $(selector).value.trim();
  return out;
}

function termParams() {
  const out = {};
  for (const [key, selector] of Object.entries(TERM_CONTROLS)) out[key] = splitTerms($(selector).value);
  return out;
}

function setRefinements(params) {
  let any = false;
  for (const [key, selector] of Object.entries(FILTER_CONTROLS)) {
    $(selector).value = params.get(key) || "";
    any ||= Boolean(params.get(key));
  }
  for (const [key, selector] of Object.entries(TERM_CONTROLS)) {
    $(selector).value = params.getAll(key).join(", ");
    any ||= params.getAll(key).length > 0;
  }
  if (any) $("#refine").open = true;
}

function filterNote(result) {
  return result.matched === undefined ? "" : ` · ${result.matched} image${result.matched === 1 ? "" : "s"} match the filter`;
}

function runPaged(fetchPage, label) {
  state.page = { fetchPage, label, offset: 0 };
  $("#results").replaceChildren();
  return loadPage();
}

async function loadPage() {
  const page = state.page;
  const summary = $("#search-summary");
  say(summary, `Searching ${page.label}…`);
  $("#more").hidden = true;
  try {
    const result = await page.fetchPage(page.offset, currentK());
    if (state.page !== page) return;  // a newer search started meanwhile
    $("#results").append(...result.results.map((hit) => card(hit, { similar: true })));
    const shown = page.offset + result.results.length;
    const label = result.terms ? `“${visible(result.query)}”` : page.label;  // a composed query as the server read it
    say(summary, `${shown} result${shown === 1 ? "" : "s"} for ${label} with ${result.model}${filterNote(result)} ` +
      `· ${result.timing_ms.total} ms`);
    page.offset = shown;
    $("#more").hidden = result.results.length < currentK() || shown > state.info.max_offset;
  } catch (error) {
    say(summary, error.message, true);
  }
}

function searchText(text) {
  const model = $("#model").value;
  const refine = { ...filterParams(), ...termParams() };
  return runPaged((offset, k) => api(`/api/search?${query({ q: text, model, k, offset, ...refine })}`), `“${text}”`);
}

function searchSimilar(id) {
  const model = $("#model").value;
  const filters = filterParams();
  return runPaged((offset, k) => api(`/api/similar?${query({ id, model, k, offset, ...filters })}`), `images like #${id}`);
}

function searchUpload(file) {
  const model = $("#model").value;
  const filters = filterParams();
  showView("search");
  return runPaged((offset, k) => {
    const form = new FormData();
    form.append("file", file);
    return api(`/api/search/image?${query({ model, k, offset, ...filters })}`, { method: "POST", body: form });
  }, `images like ${visible(file.name)}`);
}

function card(hit, { similar }) {
  const name = visible(hit.name);
  const image = el("img", { src: hit.thumb, alt: name, loading: "lazy", width: 256, height: 256 });
  const figure = el("figure", { class: "card" },
    el("button", { class: "thumb", type: "button", title: visible(hit.path), onclick: () => openViewer(hit.id) }, image),
    el("figcaption", {},
      el("span", { class: "rank", text: `#${hit.rank}` }),
      el("span", { class: "score", text: hit.score.toFixed(3), title: "cosine similarity" }),
      el("span", { class: "name", text: name, title: visible(hit.path) })));
  if (hit.date) {
    figure.querySelector("figcaption").append(el("span", { class: "date", text: `${hit.date.slice(0, 16).replace("T", " ")} (${hit.date_source})`,
      title: hit.date_source === "exif" ? "EXIF capture time" : "file modification time (no EXIF date)" }));
  }
  figure.dataset.id = hit.id;
  if (similar) {
    figure.append(el("button", { class: "similar secondary small", type: "button", text: "More like this",
      onclick: () => go(`#/search?${query({ like: hit.id, model: $("#model").value, ...filterParams() })}`) }));
  }
  return figure;
}

// -- viewer ----------------------------------------------------------------------------------

async function openViewer(id) {
  const dialog = $("#viewer");
  try {
    const meta = await api(`/api/image/${id}`);
    $("#viewer-img").src = meta.file;
    $("#viewer-img").alt = visible(meta.name);
    $("#viewer-name").textContent = visible(meta.name);
    $("#viewer-open").href = meta.file;
    const facts = [
      ["Path", visible(meta.path)],
      ["Pixels", meta.width && `${meta.width} × ${meta.height}`],
      ["File size", humanBytes(meta.size)],
      ["Taken", meta.taken_at],
      ["Camera", visible(meta.camera)],
      ["Image id", String(meta.id)],
      ["Content hash", meta.hash],
    ].filter(([, value]) => value);
    $("#viewer-meta").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]));
    $("#viewer-similar").onclick = () => {
      dialog.close();
      go(`#/search?${query({ like: id, model: $("#model").value, ...filterParams() })}`);
    };
    if (!dialog.open) dialog.showModal();
  } catch (error) {
    say($("#search-summary"), error.message, true);
  }
}

// -- compare ---------------------------------------------------------------------------------

function chosenModels() {
  return [...document.querySelectorAll("#compare-models input:checked")].map((box) => box.value);
}

async function compare(text) {
  const summary = $("#compare-summary");
  const models = chosenModels();
  if (models.length < 2) return say(summary, "Pick at least two models to compare.", true);
  say(summary, `Running “${text}” on ${models.length} models…`);
  try {
    const result = await api(`/api/compare?${query({ q: text, model: models, k: 12 })}`);
    const idSets = result.columns.map((column) => new Set(column.results.map((hit) => hit.id)));
    const inAll = [...idSets[0]].filter((id) => idSets.every((ids) => ids.has(id)));
    $("#columns").replaceChildren(...result.columns.map((column) => {
      const cards = column.results.map((hit) => {
        const node = card(hit, { similar: false });
        if (inAll.includes(hit.id)) node.classList.add("shared");
        return node;
      });
      return el("section", { class: "column" },
        el("header", {}, el("h3", { text: visible(column.model), title: visible(column.model) }),
          el("span", { class: "muted", text: `${column.timing_ms.total} ms` })),
        el("div", { class: "stack" }, ...cards));
    }));
    say(summary, `“${text}”: ${inAll.length} image${inAll.length === 1 ? " is" : "s are"} in every column ` +
      "(outlined); hover an image to find it in the other columns.");
  } catch (error) {
    say(summary, error.message, true);
  }
}

function linkColumns(event) {
  const figure = event.target.closest(".card");
  const id = figure && event.type === "mouseover" ? figure.dataset.id : null;
  for (const node of document.querySelectorAll("#columns .card")) node.classList.toggle("linked", node.dataset.id === id);
}

// -- reports ---------------------------------------------------------------------------------

async function loadReports() {
  const summary = $("#reports-summary");
  try {
    const result = await api("/api/reports");
    const rows = result.reports.map((report) => el("tr", {},
      el("td", {}, el("a", { href: report.url, target: "_blank", rel: "noopener", text: visible(report.name) })),
      el("td", { text: report.modified.replace("T", " ").replace("+00:00", " UTC") }),
      el("td", {}, ...Object.entries(report.files).map(([name, url]) =>
        el("a", { class: "file", href: url, target: "_blank", rel: "noopener", text: name })))));
    $("#reports tbody").replaceChildren(...rows);
    say(summary, rows.length ? `${rows.length} report${rows.length === 1 ? "" : "s"} in ${visible(result.reports_dir)}`
      : `No reports in ${visible(result.reports_dir)} yet: run \`imgsearch eval\` to write one.`);
  } catch (error) {
    say(summary, error.message, true);
  }
}

// -- start -----------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) {
    return say($("#status"), error.message, true);
  }
  const { info } = state;
  $("#status").textContent = `${info.images} images · ${info.models.length} model${info.models.length === 1 ? "" : "s"}`;
  $("#model").replaceChildren(...info.models.map((m) => el("option", { value: m.spec, text: visible(m.spec) })));
  $("#compare-models").append(...info.models.map((m, i) => el("label", {},
    el("input", { type: "checkbox", value: m.spec, checked: i < 3 }), ` ${visible(m.spec)}`)));
  if (!info.models.length) say($("#search-summary"), "This index has no models yet: run `imgsearch index` first.", true);

  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#q").value.trim();
    if (text) go(`#/search?${query({ q: text, model: $("#model").value, ...filterParams(), ...termParams() })}`);
  });
  $("#f-clear").addEventListener("click", () => {
    for (const selector of [...Object.values(FILTER_CONTROLS), ...Object.values(TERM_CONTROLS)]) $(selector).value = "";
  });
  $("#model").addEventListener("change", () => {
    const { view, params } = parseHash();
    if (view === "search" && (params.get("q") || params.get("like"))) {
      params.set("model", $("#model").value);
      go(`#/search?${params}`);
    }
  });
  $("#upload").addEventListener("change", (event) => {
    if (event.target.files[0]) searchUpload(event.target.files[0]);
    event.target.value = "";
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) searchUpload(file);
  });
  $("#more").addEventListener("click", loadPage);
  $("#compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#cq").value.trim();
    if (text) go(`#/compare?${query({ q: text, model: chosenModels() })}`);
  });
  $("#columns").addEventListener("mouseover", linkColumns);
  $("#columns").addEventListener("mouseleave", linkColumns);
  $("#viewer-close").addEventListener("click", () => $("#viewer").close());
  $("#viewer").addEventListener("click", (event) => { if (event.target === $("#viewer")) $("#viewer").close(); });
  window.addEventListener("hashchange", route);
  route();
}

start();
