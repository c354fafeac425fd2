// The DryBeans console: plain JavaScript over the service's own JSON API, no library, no build step.
"use strict";

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "drybeans.token";  // sessionStorage: this tab only
const PAGE_SIZE = 20;
const REFRESH_MS = 5000;
const AUDIT_ENTRIES = 10;
const state = { offset: 0, variety: "", card: null, counts: null, modelsKey: null };

// --- HTTP -------------------------------------------------------------------------------------------------------

// A GET, or a POST of `body` as JSON or of `form` (FormData) as multipart/form-data.
async function api(path, { body, form, auth = false } = {}) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  const sent = form ?? (body === undefined ? undefined : JSON.stringify(body));
  const response = await fetch(path, { method: sent === undefined ? "GET" : "POST", headers, body: sent });
  let payload = null;
  try { payload = await response.json(); } catch { /* not JSON: payload stays null */ }
  return { status: response.status, ok: response.ok, body: payload };
}

function errorText(answer) {
  return (answer.body && answer.body.error) || `HTTP ${answer.status}`;
}

// A read of recorded data: null when it needs the token (the banner and the record panels then say so).
async function recordRead(path) {
  const answer = await api(path, { auth: true });
  if (answer.status === 401 || answer.status === 403) {
    if (answer.status === 403) sessionStorage.removeItem(TOKEN_KEY);
    askForToken(answer.status === 401 ? "Recorded predictions need the API token."
                                      : "The token was refused; enter it again.");
    return null;
  }
  if (!answer.ok) throw new Error(errorText(answer));
  $("#auth").hidden = true;
  $("#records-why").hidden = true;
  $("#models-why").hidden = true;
  return answer.body;
}

function askForToken(message) {
  $("#auth-message").textContent = message;
  $("#auth").hidden = false;
  const why = $("#records-why");
  why.textContent = `${message} Records and the class mix stay empty until it is entered above; ` +
                    "classifying works without it.";
  why.hidden = false;
  const models = $("#models-why");
  models.textContent = `${message} The models' roles, their comparison and the audit log stay empty until it is ` +
                       "entered above.";
  models.hidden = false;
}

// --- Small renderers ---------------------------------------------------------------------------------------------

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

const fixed = (x, digits = 4) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));
const percent = (part, whole) => (whole ? `${(100 * part / whole).toFixed(1)}%` : "0.0%");
const utc = (iso) => (iso ? `${iso.replace("T", " ").slice(0, 19)} UTC` : "unknown");
// A number when the text reads as one; otherwise the text itself, so that the API names the problem.
const numberOrText = (text) => (text !== "" && Number.isFinite(Number(text)) ? Number(text) : text);
// Six significant digits in the shortest form: 0.0312 rather than 0.031200000000000002 or 0.0312000.
const significant = (x) => String(Number(Number(x).toPrecision(6)));
// A CSV cell: quoted when it holds a comma, a quote or a line break.
const csvCell = (text) => (/[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

// rows: [{name, bars: [{value, text, className}]}]; widths are shares of the largest value.
function renderBars(container, rows) {
  const largest = Math.max(1e-9, ...rows.flatMap((row) => row.bars.map((bar) => Math.abs(bar.value))));
  container.replaceChildren(...rows.flatMap((row) => {
    const track = element("div", undefined, "bar-track");
    for (const bar of row.bars) {
      const line = element("div", undefined, "bar-row");
      const fill = element("div", undefined, `bar ${bar.className || ""}`);
      fill.style.width = `${(70 * Math.max(0, bar.value) / largest).toFixed(2)}%`;
      line.append(fill, element("span", bar.text, "value"));
      track.append(line);
    }
    const name = element("span", row.name, "bar-name");
    track.dataset.variety = row.name;
    return [name, track];
  }));
}

function renderFacts(list, facts) {
  list.replaceChildren(...facts.flatMap(([term, value]) => {
    const dd = element("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    return [element("dt", term), dd];
  }));
}

// --- Classify one bean -------------------------------------------------------------------------------------------

const inputs = () => [...$("#bean-form").querySelectorAll("input")];  // the 16 features and the coverage
const featureInputs = () => [...$("#bean-form .fields").querySelectorAll("input")];

function beanFromForm() {
  const bean = {};
  for (const input of featureInputs()) {
    bean[input.name] = numberOrText(input.value.trim());
  }
  return bean;
}

// Each refusal next to its input (the features and the coverage); an answer that is ok clears them.
function showFieldErrors(answer) {
  const message = answer.ok ? "" : errorText(answer);
  const problems = (!answer.ok && answer.body && Array.isArray(answer.body.detail)) ? answer.body.detail : [];
  let placed = false;
  for (const input of inputs()) {
    const problem = problems.find((p) => Array.isArray(p.loc) && p.loc.includes(input.name));
    const named = message.match(new RegExp(`beans\\.0\\.${input.name}: ([^;]*)`));
    const text = problem ? problem.msg : named ? named[1] : "";
    $(`#e-${input.name}`).textContent = text;
    input.setAttribute("aria-invalid", text ? "true" : "false");
    placed ||= Boolean(text);
  }
  $("#bean-error").textContent = placed ? "" : message;
}

async function classifyBean(event) {
  event.preventDefault();
  const coverage = numberOrText($("#coverage").value.trim());
  const answer = await api("v1/classify", { body: { beans: [beanFromForm()], coverage } });
  showFieldErrors(answer);
  if (!answer.ok) { $("#bean-result").hidden = true; return; }
  const [prediction] = answer.body.predictions;
  $("#bean-label").textContent = prediction.label;
  showDoubts(prediction, coverage);
  $("#bean-stored").textContent = storedText(answer.body.stored, prediction.record_id);
  renderBars($("#bean-scores"), config.classes.map((name) => ({
    name, bars: [{ value: prediction.scores[name], text: fixed(prediction.scores[name], 2),
                   className: name === prediction.label ? "top" : "" }] })));
  $("#bean-result").hidden = false;
  refresh();
}

// The prediction set as chips, and whether to doubt the answer: a flag and each reason, in full.
function showDoubts(prediction, coverage) {
  $("#bean-coverage").textContent = String(coverage);
  $("#bean-set").replaceChildren(...setChips(prediction));
  const flag = $("#bean-flag");
  flag.className = prediction.needs_review ? "flag review" : "flag clear";
  flag.textContent = prediction.needs_review ? "Needs review" : clearText(prediction);
  $("#bean-reasons").replaceChildren(...reviewReasons(prediction));
}

function setChips(prediction) {
  const set = prediction.prediction_set;
  if (set === null) return [element("span", "not available: the model was trained before prediction sets", "muted")];
  if (set.length === 0) return [element("span", "no variety likely enough", "chip empty")];
  return set.map((name) => element("span", name, name === prediction.label ? "chip top" : "chip"));
}

// What was checked and passed (a model trained before sets and the distance has only the consistency check).
function clearText(prediction) {
  const passed = ["consistent features"];
  if (prediction.in_distribution) {
    passed.push(`within the training distribution (score ${fixed(prediction.ood_score, 2)})`);
  }
  if (prediction.prediction_set) passed.push("a set of one variety");
  return `No reason to doubt this answer: ${passed.join(", ")}.`;
}

function reviewReasons(prediction) {
  const reasons = [];
  if (!prediction.consistent) {
    const item = element("li", "Its features disagree: what was sent and what the measured features imply.");
    const table = element("table", undefined, "inconsistencies");
    const head = element("tr");
    head.append(...["feature", "sent", "implied", "rule"].map((name) => element("th", name)));
    table.append(head, ...prediction.inconsistencies.map((problem) => {
      const tr = element("tr");
      tr.dataset.feature = problem.feature;
      tr.append(element("td", problem.feature), element("td", significant(problem.sent), "num"),
                element("td", significant(problem.implied), "num"), element("td", problem.rule));
      return tr;
    }));
    item.append(table);
    reasons.push(item);
  }
  if (prediction.in_distribution === false) {
    reasons.push(element("li", `Out of the training distribution: score ${fixed(prediction.ood_score, 2)}, its `
                               + `distance to the training beans of ${prediction.label}; 99.9% of the training beans `
                               + "score lower."));
  }
  const set = prediction.prediction_set;
  if (set && set.length === 0) reasons.push(element("li", "No variety is likely enough to enter the prediction set."));
  if (set && set.length > 1) {
    reasons.push(element("li", `A set of ${set.length} varieties: the model cannot tell ${set.join(", ")} apart.`));
  }
  return reasons;
}

function storedText(stored, recordId) {
  if (stored === "committed") return `Recorded in the database as record ${recordId}.`;
  if (stored === "spooled") return "The database is down: kept on the service's disk, recorded when it returns.";
  return "Not recorded.";
}

function resetExample() {
  for (const input of inputs()) input.value = input.defaultValue;
  showFieldErrors({ ok: true });
}

// --- Classify a file ---------------------------------------------------------------------------------------------

function parseCsv(text) {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  const cells = (line) => line.split(",").map((cell) => cell.trim().replace(/^"(.*)"$/, "$1"));
  if (lines.length < 2) throw new Error("the CSV needs a header line and at least one bean");
  const header = cells(lines[0]);
  const missing = config.features.filter((name) => !header.includes(name));
  if (missing.length) throw new Error(`the header lacks ${missing.join(", ")}; use the dataset's column names`);
  const rows = lines.slice(1).map(cells);
  if (rows.length > config.max_beans) {
    throw new Error(`${rows.length} beans; the console sends at most ${config.max_beans} (the request limit)`);
  }
  return { header, rows };
}

async function classifyCsv(text) {
  const status = $("#file-status");
  const progress = $("#file-progress");
  $("#file-agreement").textContent = "";
  $("#file-doubts").hidden = true;
  $("#file-download").hidden = true;
  $("#file-results").hidden = true;
  let csv;
  try { csv = parseCsv(text); } catch (error) { status.textContent = error.message; return; }
  const column = Object.fromEntries(csv.header.map((name, index) => [name, index]));
  const beans = csv.rows.map((row) => Object.fromEntries(config.features.map((name) => [
    name, numberOrText(row[column[name]] ?? "")])));
  const coverage = numberOrText($("#csv-coverage").value.trim());
  const predictions = [];
  progress.max = beans.length;
  progress.value = 0;
  progress.hidden = false;
  for (let start = 0; start < beans.length; start += config.chunk_beans) {
    status.textContent = `classifying: ${start} of ${beans.length} beans`;
    const answer = await api("v1/classify", { body: { beans: beans.slice(start, start + config.chunk_beans),
                                                      coverage } });
    if (!answer.ok) {
      // Name the file's row (1 = the first bean) instead of the chunk's index.
      const message = errorText(answer).replace(/beans\.(\d+)/g, (_, i) => `row ${start + Number(i) + 1}`);
      status.textContent = `stopped at rows ${start + 1}-${start + config.chunk_beans}: ${message}`;
      return;
    }
    predictions.push(...answer.body.predictions);
    progress.value = predictions.length;
  }
  status.textContent = `${predictions.length} beans classified and recorded.`;
  showFileResults(csv, column.Class, predictions);
  showFileDoubts(predictions, coverage);
  refresh();
}

function showFileResults(csv, classIndex, predictions) {
  const labels = predictions.map((prediction) => prediction.label);
  const given = classIndex === undefined ? null : csv.rows.map((row) => row[classIndex]);
  if (given) {
    const agree = labels.filter((label, i) => label === given[i]).length;
    $("#file-agreement").textContent =
      `Agreement with the Class column: ${percent(agree, labels.length)} (${agree} of ${labels.length})`;
  }
  const body = $("#file-results tbody");
  body.replaceChildren(...labels.map((label, i) => {
    const tr = element("tr");
    tr.append(element("td", String(i + 1), "num"), element("td", label), element("td", given ? given[i] : ""),
              element("td", given ? (label === given[i] ? "yes" : "no") : ""), reviewCell(predictions[i]));
    return tr;
  }));
  $("#file-results").hidden = false;
  // The set comma-joined as V2 answers it (empty when the model has none), quoted.
  const answered = (prediction) => [prediction.label, csvCell((prediction.prediction_set ?? []).join(",")),
                                    String(prediction.needs_review)];
  const lines = [[...csv.header, "predicted", "prediction_set", "needs_review"].join(","),
                 ...csv.rows.map((row, i) => [...row, ...answered(predictions[i])].join(","))];
  const link = $("#file-download");
  URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  link.hidden = false;
}

// "no", or "yes" with each reason in short.
function reviewCell(prediction) {
  if (!prediction.needs_review) return element("td", "no");
  const reasons = [];
  if (!prediction.consistent) {
    const features = new Set(prediction.inconsistencies.map((problem) => problem.feature));  // a bound and a rule
    reasons.push(`inconsistent ${[...features].join(", ")}`);
  }
  if (prediction.in_distribution === false) reasons.push(`out of distribution (${fixed(prediction.ood_score, 1)})`);
  const set = prediction.prediction_set;
  if (set && set.length !== 1) reasons.push(set.length ? `set of ${set.join(", ")}` : "no variety likely enough");
  return element("td", `yes: ${reasons.join("; ")}`, "review");
}

// How many of the file's answers to doubt, and why; the mean size of the prediction sets.
function showFileDoubts(predictions, coverage) {
  const total = predictions.length;
  const count = (test) => predictions.filter(test).length;
  const share = (n) => `${n} of ${total} (${percent(n, total)})`;
  const sets = predictions.map((prediction) => prediction.prediction_set).filter((set) => set !== null);
  const assessed = predictions.some((prediction) => prediction.in_distribution !== null);
  renderFacts($("#file-doubts"), [
    ["needs review", share(count((prediction) => prediction.needs_review))],
    ["inconsistent", share(count((prediction) => !prediction.consistent))],
    ["out of distribution", assessed ? share(count((prediction) => prediction.in_distribution === false)) : "n/a"],
    ["mean set size", sets.length ? `${fixed(sets.reduce((sum, set) => sum + set.length, 0) / sets.length, 2)} `
                                    + `at coverage ${coverage}` : "n/a"],
  ]);
  $("#file-doubts").hidden = false;
}

// --- Classify a photo --------------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const PHOTO_MAX_SIDE = 2048;  // canvas pixels on the photo's longer side: plenty for the page, not 40 megapixels
const LABEL_PX = 13;  // the labels' size on screen, whatever the photo's size and the page's width
const PHOTO_FEATURES = { Area: 0, MajorAxisLength: 1, MinorAxisLength: 1 };  // the table's, with their decimals

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

async function classifyPhoto(event) {
  event.preventDefault();
  const [file] = $("#photo-file").files;
  const error = $("#photo-error");
  error.textContent = "";
  if (!file) { error.textContent = "Choose a PNG or JPEG photo first."; return; }
  const form = new FormData();
  form.append("image", file);
  if ($("#photo-background").value) form.append("background", $("#photo-background").value);
  const pixelsPerMm = $("#photo-ppm").value.trim();
  if (pixelsPerMm) form.append("pixels_per_mm", pixelsPerMm);  // as typed: the API names what is wrong with it
  form.append("store", String($("#photo-store").checked));
  const button = $("#photo-form button[type=submit]");
  button.disabled = true;
  $("#photo-status").textContent = `Measuring ${file.name}…`;
  try {
    const answer = await api("v1/photos", { form });
    if (!answer.ok) { error.textContent = errorText(answer); $("#photo-result").hidden = true; return; }
    await showPhoto(answer.body, file);
    if (answer.body.stored !== "skipped") refresh();
  } catch (failure) {
    error.textContent = `The photo could not be classified: ${failure.message}`;
  } finally {
    button.disabled = false;
    $("#photo-status").textContent = "";
  }
}

async function showPhoto(answer, file) {
  const count = answer.beans.length;
  const review = answer.beans.filter((bean) => bean.needs_review).length;
  $("#photo-scale").textContent = `Scale: ${answer.scale}`;
  $("#photo-stored").textContent = answer.stored === "committed"
    ? `Recorded in the database: ${count} records under request ${answer.photo_id}.` : storedText(answer.stored);
  $("#photo-caption").textContent = `${count} bean${count === 1 ? "" : "s"} found in ${file.name} `
                                    + `(${answer.width} × ${answer.height} pixels)${review ? `, ${review} to review` : ""}.`;
  $("#photo-beans tbody").replaceChildren(...answer.beans.map(photoRow));
  $("#photo-result").hidden = false;  // shown and sized before the outlines: their labels fit the drawn width
  sizeCanvas(answer.width, answer.height);
  drawOutlines(answer);
  try {
    await drawPhoto(file);
  } catch (failure) {
    $("#photo-error").textContent = `The browser could not draw the photo (${failure.message}); its beans are `
                                    + "outlined without it.";
  }
}

// The canvas at the photo's proportions (which clears it), at most 70% of the window's height.
function sizeCanvas(width, height) {
  const canvas = $("#photo-canvas");
  const shrink = Math.min(1, PHOTO_MAX_SIDE / Math.max(width, height));
  canvas.width = Math.round(width * shrink);
  canvas.height = Math.round(height * shrink);
  $("#photo-stage").style.maxWidth = `min(100%, ${(70 * width / height).toFixed(2)}vh)`;
}

// The chosen file drawn on the canvas from its own bytes: an <img> of an object URL would load a blob: address,
// which the page's Content-Security-Policy (img-src 'self' data:) refuses. Upright by its EXIF orientation, as the
// service measured it.
async function drawPhoto(file) {
  const canvas = $("#photo-canvas");
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
}

// Each bean's outline in the photo's pixels, labelled with its number and variety; one to review dashed and marked.
function drawOutlines(answer) {
  const overlay = $("#photo-overlay");
  overlay.setAttribute("viewBox", `0 0 ${answer.width} ${answer.height}`);
  overlay.replaceChildren(...answer.beans.map((bean, i) => {
    const group = svgElement("g", { class: bean.needs_review ? "bean review" : "bean", "data-bean": i + 1 });
    const title = svgElement("title");
    title.textContent = `bean ${i + 1}: ${bean.label}${bean.needs_review ? ", needs review" : ""}`;
    const points = bean.contour.map(([x, y]) => `${x},${y}`).join(" ");
    const [x, y] = bean.centroid;
    const label = svgElement("text", { class: "label", x, y });
    label.textContent = `${i + 1} ${bean.label}`;
    if (bean.needs_review) {
      const marker = svgElement("tspan", { class: "marker", x, dy: "1.2em" });
      marker.textContent = "⚑ review";
      label.append(marker);
    }
    group.append(title, svgElement("polygon", { class: "outline", points }), label);
    return group;
  }));
  sizeLabels();
}

function sizeLabels() {
  const overlay = $("#photo-overlay");
  const shown = overlay.getBoundingClientRect().width;
  const box = overlay.viewBox.baseVal;
  if (shown && box) overlay.setAttribute("font-size", (LABEL_PX * box.width / shown).toFixed(2));
}

function photoRow(bean, i) {
  const flags = [];
  if (bean.needs_review) flags.push("needs review");
  if (!bean.consistent) flags.push("inconsistent");
  if (bean.in_distribution === false) flags.push("out of distribution");
  const [top, probability] = Object.entries(bean.probabilities).reduce((a, b) => (b[1] > a[1] ? b : a));
  const set = bean.prediction_set;
  const tr = element("tr", undefined, flags.length ? "flagged" : "");
  tr.dataset.bean = i + 1;
  tr.append(element("td", String(i + 1), "num"), element("td", bean.label),
            element("td", fixed(probability, 3) + (top === bean.label ? "" : ` (${top})`), "num"),
            element("td", set === null ? "n/a" : set.length ? set.join(", ") : "none likely enough"),
            element("td", flags.join(", ") || "none", flags.length ? "review" : ""),
            ...Object.entries(PHOTO_FEATURES).map(([name, digits]) => element("td", fixed(bean.features[name], digits),
                                                                               "num")));
  return tr;
}

// --- Records, class mix, model, monitoring, health ---------------------------------------------------------------

async function loadRecords() {
  const query = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offset });
  if (state.variety) query.set("variety", state.variety);
  const page = await recordRead(`v1/predictions?${query}`);
  const body = $("#records-table tbody");
  if (page === null) { body.replaceChildren(); $("#page-info").textContent = ""; return; }
  body.replaceChildren(...page.items.map((item) => {
    const tr = element("tr");
    tr.append(element("td", String(item.id), "num"), element("td", utc(item.created_at)), element("td", item.name),
              element("td", item.model_tag || "(tutorial era)"));
    return tr;
  }));
  const last = Math.min(page.offset + page.items.length, page.total);
  $("#page-info").textContent = page.total ? `${page.offset + 1}-${last} of ${page.total}` : "no records yet";
  $("#newer").disabled = page.offset === 0;
  $("#older").disabled = last >= page.total;
}

async function loadCounts() {
  state.counts = await recordRead("v1/predictions/counts");
  renderMix();
}

function renderMix() {
  const training = state.card && state.card.training_data.class_counts;
  const trainingTotal = training ? Object.values(training).reduce((a, b) => a + b, 0) : 0;
  renderBars($("#class-mix"), config.classes.map((name) => {
    const bars = [];
    if (state.counts) {
      const count = state.counts.counts[name] || 0;
      bars.push({ value: count / (state.counts.total || 1), className: "recorded",
                  text: `${percent(count, state.counts.total)} (${count})` });
    }
    if (training) {
      bars.push({ value: training[name] / trainingTotal, className: "training",
                  text: `${percent(training[name], trainingTotal)} (${training[name]})` });
    }
    return { name, bars };
  }));
}

async function loadModel() {
  const answer = await api("v1/model");
  if (!answer.ok) { renderFacts($("#model-facts"), [["error", errorText(answer)]]); return; }
  const card = state.card = answer.body;
  const data = card.training_data;
  renderFacts($("#model-facts"), [
    ["tag", card.tag], ["trained", utc(card.trained_at)],
    ["holdout accuracy", fixed(card.holdout_accuracy)], ["macro F1", fixed(card.macro_f1)],
    ["5-fold CV accuracy", `${fixed(card.cv_accuracy_mean)} ± ${fixed(card.cv_accuracy_std)}`],
    ["trained on", `${data.file}, ${data.rows} beans (70% fitted, 30% holdout)`],
  ]);
  renderBars($("#model-f1"), card.classes.map((name) => ({
    name, bars: [{ value: card.per_class_f1[name], text: fixed(card.per_class_f1[name]) }] })));
  const table = $("#confusion");
  const head = element("tr");
  head.append(element("th", "true \\ predicted"), ...card.classes.map((name) => element("th", name.slice(0, 4))));
  table.replaceChildren(head, ...card.confusion_matrix.map((row, i) => {
    const tr = element("tr");
    const total = row.reduce((a, b) => a + b, 0) || 1;
    tr.append(element("th", card.classes[i]), ...row.map((count, j) => {
      const cell = element("td", String(count));
      const share = count / total;  // shaded by the share of the true class (recall on the diagonal)
      cell.style.background = `rgba(11, 92, 173, ${(0.7 * share).toFixed(3)})`;
      if (share > 0.5) cell.style.color = "#fff";
      cell.title = `true ${card.classes[i]}, predicted ${card.classes[j]}: ${count}`;
      return cell;
    }));
    return tr;
  }));
  renderMix();
}

// /v1/quality and /v1/drift belong to monitoring: shown when they answer, nothing when they do not (404).
async function loadMonitoring() {
  const shown = [];
  for (const [path, target, title, facts] of [["v1/quality", "#quality", "Live quality", qualityFacts],
                                               ["v1/drift", "#drift", "Drift", driftFacts]]) {
    const answer = await api(path, { auth: true });
    const box = $(target);
    box.replaceChildren();
    if (!answer.ok) continue;  // 404: not deployed; 401/403: the record panels already ask for the token
    shown.push(path);
    const list = element("dl", undefined, "facts");
    renderFacts(list, facts(answer.body));
    box.append(element("h4", title), list);
  }
  $("#monitoring").hidden = shown.length === 0;
}

function qualityFacts(report) {
  const accuracy = report.accuracy || {};
  return [
    ["accuracy", accuracy.live === null || accuracy.live === undefined
      ? `not enough reported beans yet (${report.labelled} of ${report.min_count})`
      : `${fixed(accuracy.live)} on ${accuracy.count} reported beans`],
    ["at training", fixed(accuracy.training)],
  ];
}

function driftFacts(report) {
  const psi = Object.entries(report.features || {}).filter(([, f]) => f.psi !== null)
    .sort((a, b) => b[1].psi - a[1].psi).slice(0, 3).map(([name, f]) => `${name} ${fixed(f.psi, 3)}`);
  const outside = report.outside_training_range;
  return [
    ["beans", `newest ${report.beans} of the last ${report.window} records`],
    ["drifted", (report.drifted || []).length ? report.drifted.join(", ") : `none (PSI above ${report.threshold})`],
    ["highest PSI", psi.join(", ") || "n/a"],
    ["class mix PSI", fixed(report.class_mix && report.class_mix.psi, 3)],
    ["outside training range", outside === null || outside === undefined ? "n/a" : percent(outside, 1)],
  ];
}

async function loadHealth() {
  const answer = await api("readyz");
  const report = answer.body || {};
  const database = element("span", report.database || "unknown", report.database === "up" ? "state-up" : "state-down");
  renderFacts($("#health-facts"), [
    ["ready", report.ready ? "yes" : "no"], ["database", database],
    ["spool", report.spool_depth === undefined ? "unknown" : `${report.spool_depth} predictions waiting`],
    ["model", report.model || "loading"],
  ]);
}

// --- Models: roles, the challengers' comparison, the audit log ---------------------------------------------------

async function loadModels() {
  const list = await recordRead("v1/models");
  showModels(list);
  if (list === null) { $("#comparisons").replaceChildren(); $("#audit-table tbody").replaceChildren(); return; }
  await Promise.all([loadComparisons(list), loadAudit()]);
}

// Redrawn only when the list changed, so that a refresh keeps the shares and the reason being typed.
function showModels(list) {
  const models = list ? list.models : [];
  followChampion(models.find((model) => model.role === "champion"));
  const key = JSON.stringify(list);
  if (key === state.modelsKey) return;
  state.modelsKey = key;
  $("#models-table tbody").replaceChildren(...models.map(modelRow));
  const rollback = $("#rollback");
  rollback.hidden = !(list && list.previous_champion);
  rollback.textContent = list && list.previous_champion ? `Roll back to ${list.previous_champion}` : "";
}

// The page's header and "The model" name the champion; a worker that has not applied a change yet answers with the
// one before, so the card is read again on each refresh until it names the champion.
function followChampion(champion) {
  if (!champion) return;
  $("#model-tag").textContent = champion.tag;
  if (state.card && state.card.tag !== champion.tag) loadModel();
}

function modelRow(model) {
  const tr = element("tr");
  tr.dataset.version = model.version;
  tr.append(element("td", model.version), element("td", model.role, `role ${model.role}`),
            element("td", model.share === null ? "" : String(model.share), "num"), element("td", utc(model.trained_at)),
            element("td", fixed(model.holdout.holdout_accuracy), "num"), element("td", model.kernel || "unknown"),
            roleActions(model));
  return tr;
}

function roleActions(model) {
  const cell = element("td");
  if (model.role === "champion") { cell.textContent = "answers"; return cell; }
  const button = (action, text) => {
    const node = element("button", text);
    node.type = "button";
    node.dataset.action = action;
    node.setAttribute("aria-label", `${text} ${model.version}`);
    return node;
  };
  const withShare = (action, text, share) => {
    const input = element("input");
    Object.assign(input, { type: "text", inputMode: "decimal", size: 4, name: `${action}-share`, value: share });
    input.setAttribute("aria-label", `share of requests for ${model.version} as ${action}`);
    const group = element("span", undefined, "role-action");
    group.append(input, button(action, text));
    return group;
  };
  const check = element("input");
  Object.assign(check, { type: "checkbox", name: "force", title: "promote although it was never shadow or canary" });
  const force = element("label");
  force.append(check, " force");
  const promote = element("span", undefined, "role-action");
  promote.append(force, button("promote", "Promote"));
  const idle = button("idle", "Idle");
  idle.disabled = model.role === "idle";
  const actions = element("div", undefined, "role-actions");
  actions.append(withShare("shadow", "Shadow", model.role === "shadow" ? model.share : 1),
                 withShare("canary", "Canary", model.role === "canary" ? model.share : 0.1), promote, idle);
  cell.append(actions);
  return cell;
}

async function changeRole(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("tr");
  const { action } = button.dataset;
  const body = { reason: $("#role-reason").value.trim() };
  if (action === "shadow" || action === "canary") {
    body.share = numberOrText(row.querySelector(`[name=${action}-share]`).value.trim());
  }
  if (action === "promote") body.force = row.querySelector("[name=force]").checked;
  await operate(button, `v1/models/${encodeURIComponent(row.dataset.version)}/${action}`, body, row.dataset.version);
}

// POST a role change with the token; the answer is the new list, an error is shown as the API words it.
async function operate(button, path, body, version) {
  $("#models-error").textContent = "";
  $("#models-status").textContent = "";
  button.disabled = true;
  try {
    const answer = await api(path, { body, auth: true });
    if (!answer.ok) { $("#models-error").textContent = errorText(answer); return; }
    const models = answer.body.models;
    const named = version ?? models.find((m) => m.role === "champion").version;  // a rollback: the champion
    const model = models.find((m) => m.version === named);
    $("#models-status").textContent = `${model.version} is now ${model.role}` +
                                      (model.share === null ? "." : ` (share ${model.share}).`);
    showModels(answer.body);
    await Promise.all([loadComparisons(answer.body), loadAudit()]);
  } finally {
    button.disabled = false;
  }
}

async function loadComparisons(list) {
  const champion = list.models.find((model) => model.role === "champion");
  const challengers = list.models.filter((model) => model.role === "shadow" || model.role === "canary");
  const boxes = await Promise.all(challengers.map(async (model) => {
    const query = new URLSearchParams({ challenger: model.version });
    const answer = await api(`v1/models/compare?${query}`, { auth: true });
    const facts = element("dl", undefined, "facts");
    renderFacts(facts, answer.ok ? comparisonFacts(answer.body) : [["error", errorText(answer)]]);
    const box = element("div", undefined, "comparison");
    box.dataset.version = model.version;
    box.append(element("h3", `The ${model.role} ${model.version} against the champion ${champion.version}`), facts);
    return box;
  }));
  $("#comparisons").replaceChildren(...boxes);
}

function comparisonFacts(comparison) {
  const { counts, mcnemar, latency } = comparison;
  const accuracy = (figures) => (figures.accuracy === null
    ? `not enough labelled beans (${counts.labelled} of ${counts.min_count})`
    : `${fixed(figures.accuracy)} (${figures.correct} of ${counts.labelled} labelled beans)`);
  const timing = (figures) => (figures && figures.requests
    ? `median ${fixed(figures.median_ms, 2)} ms, p99 ${fixed(figures.p99_ms, 2)} ms (${figures.requests} requests)`
    : "no requests yet");
  return [
    ["agreement", comparison.agreement === null ? "no beans scored by both yet"
      : `${fixed(comparison.agreement)} on ${counts.scored} beans`],
    ["champion accuracy", accuracy(comparison.champion)], ["challenger accuracy", accuracy(comparison.challenger)],
    ["verdict", comparison.verdict],
    ["McNemar p-value", `${Number(mcnemar.p_value).toPrecision(3)} (only the champion right: ${mcnemar.b}, ` +
                        `only the challenger: ${mcnemar.c})`],
    ["champion latency", timing(latency.champion)], ["challenger latency", timing(latency.challenger)],
  ];
}

async function loadAudit() {
  const log = await recordRead(`v1/models/audit?${new URLSearchParams({ limit: AUDIT_ENTRIES })}`);
  $("#audit-table tbody").replaceChildren(...(log ? log.entries : []).map((entry) => {
    const tr = element("tr");
    tr.append(element("td", utc(entry.created_at)), element("td", entry.action),
              element("td", entry.version ?? entry.champion), element("td", entry.actor),
              element("td", entry.reason, "reason"));
    return tr;
  }));
}

// --- Wiring ------------------------------------------------------------------------------------------------------

function refresh() {
  for (const load of [loadRecords, loadCounts, loadHealth, loadMonitoring, loadModels]) {
    load().catch((error) => console.warn(load.name, error));
  }
}

function start() {
  $("#bean-form").addEventListener("submit", classifyBean);
  $("#example-bean").addEventListener("click", resetExample);
  $("#csv-file").addEventListener("change", async (event) => {
    const [file] = event.target.files;
    if (file) await classifyCsv(await file.text());
  });
  $("#csv-go").addEventListener("click", () => classifyCsv($("#csv-text").value));
  $("#photo-form").addEventListener("submit", classifyPhoto);
  new ResizeObserver(sizeLabels).observe($("#photo-overlay"));
  $("#variety-filter").addEventListener("change", (event) => {
    state.variety = event.target.value;
    state.offset = 0;
    loadRecords();
  });
  $("#newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadRecords(); });
  $("#older").addEventListener("click", () => { state.offset += PAGE_SIZE; loadRecords(); });
  $("#models-table tbody").addEventListener("click", changeRole);
  $("#rollback").addEventListener("click", (event) => operate(event.target, "v1/models/rollback",
                                                              { reason: $("#role-reason").value.trim() }));
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    refresh();
  });
  loadModel();
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
}

start();
