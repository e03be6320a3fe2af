// imgsearch Judge page: one query at a time, each pooled image relevant or not, by click or key.
// Nothing here says which search found an image, or how high: judges see images only. Every text
// from the server goes into the page through textContent, never as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);
const JUDGE_KEY = "imgsearch-judge";

const state = {
  judge: "",
  depth: new URLSearchParams(location.search).get("depth") || "",  // "": the server's default
  list: null,  // /api/judge/queries
  pool: null,  // /api/judge/pool of the query shown
  current: 0,  // index of the image the keys act on
  loading: false,  // a pool is being read: keys wait, so none lands on an image about to be replaced
  undo: [],  // {query, id, previous}: previous is true, false or null (not judged)
};

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

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function params(extra = {}) {
  const search = new URLSearchParams({ judge: state.judge, ...extra });
  if (state.depth) search.set("depth", state.depth);
  return search.toString();
}

// Bidirectional controls (U+202E and kin) in a file name are shown as codes, not obeyed.
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

function visible(text) {
  return text == null ? text : String(text).replace(BIDI_CONTROLS,
    (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

function say(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

// -- saving: one request at a time, in the order the keys were pressed ------------------------

let saving = Promise.resolve();
let pending = 0;
let failed = null;

function save(path, body, revert) {
  pending += 1;
  showSaved();
  saving = saving.then(() => post(path, body)).then(() => { failed = null; }, (error) => {
    failed = error.message;
    revert();
  }).finally(() => {
    pending -= 1;
    showSaved();
    if (!pending) refreshSoon();
  });
  return saving;
}

// Once the keys rest, the other queries' counts and the judges' agreement are read again.
let refreshTimer = null;

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (!pending) loadList().catch(showError); }, 300);
}

function showSaved() {
  if (failed) say($("#saved"), `Not saved: ${failed}`, true);
  else say($("#saved"), pending ? "Saving…" : "All judgments saved.");
}

// -- queries ----------------------------------------------------------------------------------

async function loadList() {
  await saving;
  state.list = await api(`/api/judge/queries?${params()}`);
  const { queries } = state.list;
  $("#judging").hidden = !queries.length;
  if (!queries.length) say($("#add-summary"), "Add a query to start: what would you search your photos for?");
  $("#query-select").replaceChildren(...queries.map((q, i) => el("option", { value: String(i), text: optionText(q) })));
  showAgreement();
  if (state.pool && listEntry(state.pool.query)) showProgress();  // the query shown: its own count is the freshest
}

function optionText(q) {
  return `${q.query} (${q.judged}/${q.pooled})`;
}

function showAgreement() {
  const pairs = state.list.agreement;
  const name = (judge) => judge || "(no name)";
  say($("#agreement"), pairs.length ? "Agreement between judges on the images both judged (Cohen's κ): " + pairs.map((a) =>
    `${name(a.judges[0])} / ${name(a.judges[1])} κ ${a.kappa === null ? "undefined" : a.kappa.toFixed(2)} ` +
    `on ${plural(a.pairs, "image")}`).join(" · ") : "");
}

function listEntry(text) {
  return state.list.queries.find((q) => q.query === text);
}

async function openQuery(text, focusId = null) {
  state.loading = true;
  let pool;
  try {
    await saving;
    pool = await api(`/api/judge/pool?${params({ query: text })}`);
  } finally {
    state.loading = false;
  }
  state.pool = pool;
  history.replaceState(null, "", `${location.pathname}${location.search}#${new URLSearchParams({ q: pool.query })}`);
  $("#query-select").value = String(pool.position - 1);
  $("#query-text").textContent = `“${pool.query}”`;
  $("#pool").replaceChildren(...pool.images.map(card));
  const wanted = pool.images.findIndex((image) => image.id === focusId);
  const unjudged = pool.images.findIndex((image) => image.relevant === null);
  setCurrent(wanted >= 0 ? wanted : Math.max(unjudged, 0));
  showProgress();
}

function showProgress() {
  const { pool } = state;
  const judged = pool.images.filter((image) => image.relevant !== null).length;
  const entry = state.list && listEntry(pool.query);
  if (entry) {
    $("#query-select").value = String(pool.position - 1);
    entry.judged = judged;
    $("#query-select").options[pool.position - 1].textContent = optionText(entry);
  }
  let text = `query ${pool.position} of ${pool.of} · ${judged} of ${plural(pool.images.length, "image")} judged`;
  if (!pool.images.length) text += " · nothing to judge: no image is indexed yet";
  else if (judged === pool.images.length) text += nextUnjudged() === null ? " · every query is judged" : " · press j for the next unjudged query";
  say($("#progress"), text);
}

function nextUnjudged() {
  const { queries } = state.list;
  const at = state.pool ? state.pool.position - 1 : -1;
  for (let step = 1; step <= queries.length; step += 1) {
    const q = queries[(at + step) % queries.length];
    if (q.judged < q.pooled) return q.query;
  }
  return null;
}

function goToQuery(offset) {
  const { queries } = state.list;
  if (!queries.length) return;
  const at = state.pool ? state.pool.position - 1 : 0;
  return openQuery(queries[(at + offset + queries.length) % queries.length].query).catch(showError);
}

function goToNextUnjudged() {
  const text = nextUnjudged();
  if (text === null) return state.pool && showProgress();  // it says that every query is judged
  return openQuery(text).catch(showError);
}

function showError(error) {
  say($("#progress"), error.message, true);
}

// -- the pool ---------------------------------------------------------------------------------

function card(image, index) {
  const name = visible(image.name);
  const figure = el("figure", { class: "judge-card" },
    el("button", { class: "thumb", type: "button", title: visible(image.path), onclick: () => setCurrent(index),
      ondblclick: () => openFull(index) },
      el("img", { src: image.thumb, alt: name, width: 256, height: 256 })),
    el("figcaption", {},
      el("span", { class: "mark" }),
      el("span", { class: "name", text: name, title: visible(image.path) })),
    el("div", { class: "choices" },
      el("button", { class: "yes", type: "button", text: "Relevant", title: "1 or y", onclick: () => mark(index, true) }),
      el("button", { class: "no secondary", type: "button", text: "Not relevant", title: "0 or n",
        onclick: () => mark(index, false) }),
      el("button", { class: "view secondary", type: "button", text: "Full image", title: "f",
        onclick: () => openFull(index) })));
  figure.dataset.id = image.id;
  showMark(figure, image.relevant);
  return figure;
}

function cards() {
  return $("#pool").children;
}

function showMark(figure, relevant) {
  figure.classList.toggle("relevant", relevant === true);
  figure.classList.toggle("not-relevant", relevant === false);
  figure.dataset.judgment = relevant === null ? "" : relevant ? "relevant" : "not relevant";
  figure.querySelector(".mark").textContent = relevant === null ? "not judged" : relevant ? "✓ relevant" : "✗ not relevant";
  figure.querySelector("button.yes").setAttribute("aria-pressed", String(relevant === true));
  figure.querySelector("button.no").setAttribute("aria-pressed", String(relevant === false));
}

function setCurrent(index) {
  const all = cards();
  if (!all.length) return;
  state.current = Math.min(Math.max(index, 0), all.length - 1);
  for (const [i, figure] of [...all].entries()) {
    figure.classList.toggle("current", i === state.current);
    if (i === state.current) figure.setAttribute("aria-current", "true");
    else figure.removeAttribute("aria-current");
  }
  all[state.current].scrollIntoView({ block: "nearest" });
  if ($("#full").open) showFull();
}

function columns() {
  return getComputedStyle($("#pool")).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
}

function setJudgment(index, relevant) {
  state.pool.images[index].relevant = relevant;
  showMark(cards()[index], relevant);
  showProgress();
  if ($("#full").open && index === state.current) showFull();
}

function mark(index, relevant) {
  const { pool } = state;
  const image = pool && pool.images[index];
  if (!image) return;
  const previous = image.relevant;
  if (previous !== relevant) {
    setJudgment(index, relevant);
    state.undo.push({ query: pool.query, id: image.id, previous });
    const body = { query: pool.query, image_id: image.id, relevant, judge: state.judge, depth: pool.depth };
    save("/api/judge/mark", body, () => state.pool === pool && setJudgment(index, previous));
  }
  // On to the next image not judged yet, after this one (wrapping); stay when all are judged.
  const n = pool.images.length;
  for (let step = 1; step < n; step += 1) {
    if (pool.images[(index + step) % n].relevant === null) return setCurrent((index + step) % n);
  }
  setCurrent(index);
}

async function undo() {
  const last = state.undo.pop();
  if (!last) return say($("#saved"), "Nothing to undo.");
  if (!state.pool || state.pool.query !== last.query) await openQuery(last.query, last.id);
  const { pool } = state;
  const index = pool.images.findIndex((image) => image.id === last.id);
  if (index < 0) return;
  const undone = pool.images[index].relevant;
  setJudgment(index, last.previous);
  setCurrent(index);
  const base = { query: pool.query, image_id: last.id, judge: state.judge };
  const revert = () => state.pool === pool && setJudgment(index, undone);
  if (last.previous === null) save("/api/judge/unmark", base, revert);
  else save("/api/judge/mark", { ...base, relevant: last.previous, depth: pool.depth }, revert);
}

// -- the full image ---------------------------------------------------------------------------

function openFull(index) {
  setCurrent(index);
  showFull();
  if (!$("#full").open) $("#full").showModal();
}

function showFull() {
  const image = state.pool && state.pool.images[state.current];
  if (!image) return;
  if ($("#full-img").getAttribute("src") !== image.file) $("#full-img").src = image.file;
  $("#full-img").alt = visible(image.name);
  $("#full-name").textContent = visible(image.name);
  $("#full-mark").textContent = image.relevant === null ? "not judged" : image.relevant ? "✓ relevant" : "✗ not relevant";
}

// -- keys -------------------------------------------------------------------------------------

const KEYS = {
  1: () => mark(state.current, true),
  y: () => mark(state.current, true),
  0: () => mark(state.current, false),
  n: () => mark(state.current, false),
  ArrowLeft: () => setCurrent(state.current - 1),
  ArrowRight: () => setCurrent(state.current + 1),
  ArrowUp: () => setCurrent(state.current - columns()),
  ArrowDown: () => setCurrent(state.current + columns()),
  u: () => undo().catch(showError),
  f: () => ($("#full").open ? $("#full").close() : openFull(state.current)),
  j: goToNextUnjudged,
  "[": () => goToQuery(-1),
  "]": () => goToQuery(1),
};

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || !state.pool || state.loading) return;
  if (event.target.closest("input, textarea, select")) return;
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

// -- adding queries ---------------------------------------------------------------------------

async function addQueries(texts, suggested = false) {
  try {
    const { queries } = await post("/api/judge/queries", { queries: texts, suggested });
    const added = queries.filter((q) => q.added).length;
    say($("#add-summary"), `Added ${plural(added, "query", "queries")}` + (added < queries.length
      ? ` (${queries.length - added} ${queries.length - added === 1 ? "was" : "were"} there already).` : "."));
    await loadList();
    if (!state.pool) await openQuery(queries[0].query);
    else showProgress();
    return true;
  } catch (error) {
    say($("#add-summary"), error.message, true);
    return false;
  }
}

async function suggest() {
  say($("#add-summary"), "Looking at your photos… (a few seconds)");
  try {
    const { suggestions } = await api("/api/judge/suggest?n=12");
    const list = $("#suggestion-list");
    list.replaceChildren(...suggestions.map((s) => el("button", {
      type: "button", class: "secondary small", text: s.query, title: `${plural(s.images, "sampled image")}`,
      onclick: async (event) => {
        const chip = event.currentTarget;
        if (await addQueries([s.query], true)) chip.remove();
      },
    })));
    $("#suggestions").hidden = !suggestions.length;
    say($("#add-summary"), suggestions.length ? "" : "No suggestions: no indexed photo could be read.");
  } catch (error) {
    say($("#add-summary"), error.message, true);
  }
}

// -- start ------------------------------------------------------------------------------------

async function start() {
  state.judge = localStorage.getItem(JUDGE_KEY) || "";
  $("#judge").value = state.judge;
  $("#judge").addEventListener("keydown", (event) => { if (event.key === "Enter") event.target.blur(); });
  $("#judge").addEventListener("change", async () => {
    state.judge = $("#judge").value.trim();
    localStorage.setItem(JUDGE_KEY, state.judge);
    state.undo = [];  // undo takes back this judge's own marks only
    const shown = state.pool;
    if (shown) {
      state.pool = null;  // the marks on screen are the other judge's: nothing may act on them
      $("#pool").replaceChildren();
      say($("#progress"), "Reading this judge's judgments…");
    }
    try {
      await loadList();
      if (shown) await openQuery(shown.query);
    } catch (error) {
      showError(error);
    }
  });
  $("#add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const texts = $("#new-queries").value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (!texts.length) return say($("#add-summary"), "Type a query first, one per line.", true);
    if (await addQueries(texts)) $("#new-queries").value = "";
  });
  $("#suggest").addEventListener("click", suggest);
  $("#add-all").addEventListener("click", async () => {
    const texts = [...$("#suggestion-list").children].map((chip) => chip.textContent);
    if (texts.length && await addQueries(texts, true)) $("#suggestion-list").replaceChildren();
  });
  $("#query-select").addEventListener("change", (event) =>
    openQuery(state.list.queries[Number(event.target.value)].query).catch(showError));
  $("#prev-query").addEventListener("click", () => goToQuery(-1));
  $("#next-query").addEventListener("click", () => goToQuery(1));
  $("#next-unjudged").addEventListener("click", goToNextUnjudged);
  $("#full-yes").addEventListener("click", () => mark(state.current, true));
  $("#full-no").addEventListener("click", () => mark(state.current, false));
  $("#full-close").addEventListener("click", () => $("#full").close());
  $("#full").addEventListener("click", (event) => { if (event.target === $("#full")) $("#full").close(); });
  document.addEventListener("keydown", onKey);
  try {
    await loadList();
    const { queries } = state.list;
    if (!queries.length) return;
    const asked = new URLSearchParams(location.hash.slice(1)).get("q");
    const first = queries.find((q) => q.query === asked) || queries.find((q) => q.judged < q.pooled) || queries[0];
    await openQuery(first.query);
  } catch (error) {
    say($("#add-summary"), error.message, true);
  }
}

start();
