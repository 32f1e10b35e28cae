// The draw-a-digit page. It calls only this server: /page/NAME/input turns
// the drawing (or a dropped file) into the model's input with predict's own
// preprocessing, and TensorFlow Serving's :predict with the "explain"
// signature gives the probabilities, the evidence map and the template.
"use strict";

const NAME = document.querySelector('meta[name="model"]').content;
const API = "/v1/models/" + encodeURIComponent(NAME);
const $ = (id) => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d");
let explain = true, request = 0;

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
  return body;
}

// An image [H][W][C] (0..255) onto a canvas, one cell per pixel.
function paint(canvas, image, colour) {
  const h = image.length, w = image[0].length;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const data = small.getContext("2d").createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const rgb = colour(image[y][x]);
    data.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * (y * w + x));
  }
  small.getContext("2d").putImageData(data, 0, 0);
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.clearRect(0, 0, canvas.width, canvas.height);
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

const grey = (px) => px.length === 3 ? px : [px[0], px[0], px[0]];
const sum = (px) => px.reduce((a, b) => a + b, 0);

// Diverging colours, white at 0: red for, blue against (ColorBrewer RdBu ends).
function diverging(image) {
  let m = 0;
  for (const row of image) for (const px of row) m = Math.max(m, Math.abs(sum(px)));
  return (px) => {
    const t = m ? sum(px) / m : 0, end = t > 0 ? [178, 24, 43] : [33, 102, 172];
    const a = Math.abs(t);
    return end.map((c) => Math.round(255 + (c - 255) * a));
  };
}

function showPrediction(p, input) {
  const probabilities = p.probabilities;
  const names = p.all_class_names || probabilities.map((_, k) => String(k));
  const top = p.class_ids;
  const predicted = $("predicted");
  predicted.textContent = names[top];
  predicted.dataset.classId = top;
  $("bars").replaceChildren(...probabilities.map((q, k) => {
    const li = document.createElement("li");
    li.className = k === top ? "top" : "";
    li.innerHTML = '<span class="name"></span><span class="bar"><span class="fill"></span></span><span class="p"></span>';
    li.querySelector(".name").textContent = names[k];
    li.querySelector(".fill").style.width = (100 * q).toFixed(1) + "%";
    li.querySelector(".p").textContent = (100 * q).toFixed(1) + "%";
    return li;
  }));
  if (explain) {
    paint($("evidence"), p.evidence, diverging(p.evidence));
    paint($("template"), p.template, diverging(p.template));
    let total = 0;
    for (const row of p.evidence) for (const px of row) total += sum(px);
    $("evidence-class").textContent = $("template-class").textContent = names[top];
    $("evidence-note").innerHTML = "Each pixel's x<sub>i</sub>&middot;W<sub>ic</sub>: " +
      '<span class="pos">red</span> for, <span class="neg">blue</span> against. ' +
      "Sum " + total.toFixed(2) + " + bias " + p.bias.toFixed(2) + " = logit " +
      (total + p.bias).toFixed(2) + ".";
  }
  predicted.dataset.state = "done";
}

// Drawing or file -> input -> prediction; an older answer never overwrites a newer one.
async function classify(blob) {
  const mine = ++request;
  $("predicted").dataset.state = "working";
  try {
    const input = await call("/page/" + encodeURIComponent(NAME) + "/input", {
      method: "POST", headers: {"Content-Type": blob.type || "application/octet-stream"}, body: blob});
    if (mine !== request) return;
    paint($("input-view"), input.images, grey);
    $("input-note").textContent = input.preprocess === "mnist"
      ? "28\u00d728, as predict --preprocess=mnist makes it." : "Resized to the model's input.";
    const answer = await call(API + ":predict", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({signature_name: explain ? "explain" : "serving_default",
                            instances: [input.images]})});
    if (mine !== request) return;
    showError("");
    showPrediction(answer.predictions[0], input.images);
  } catch (e) {
    if (mine !== request) return;
    $("predicted").dataset.state = "error";
    showError(String(e.message || e));
  }
}

function classifyPad() {
  $("predicted").dataset.state = "working";
  pad.toBlob((blob) => classify(blob), "image/png");
}

// Strokes: pointer events cover mouse, pen and touch.
let last = null;
pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId);
  last = [e.offsetX, e.offsetY];
  ctx.beginPath(); ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fill();
});
pad.addEventListener("pointermove", (e) => {
  if (!last) return;
  ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(e.offsetX, e.offsetY); ctx.stroke();
  last = [e.offsetX, e.offsetY];
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => { if (last) { last = null; classifyPad(); } });
}

async function showFile(file) {
  if (!file) return;
  $("predicted").dataset.state = "working";
  try {
    const bitmap = await createImageBitmap(file);
    clearPad();
    const s = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, (pad.width - bitmap.width * s) / 2, (pad.height - bitmap.height * s) / 2,
                  bitmap.width * s, bitmap.height * s);
  } catch (e) { /* the server names what it cannot read */ }
  resetStrokeStyle();
  classify(file);
}

$("file").addEventListener("change", (e) => showFile(e.target.files[0]));
pad.addEventListener("dragover", (e) => { e.preventDefault(); pad.classList.add("drop"); });
pad.addEventListener("dragleave", () => pad.classList.remove("drop"));
pad.addEventListener("drop", (e) => {
  e.preventDefault(); pad.classList.remove("drop");
  showFile(e.dataTransfer.files[0]);
});
$("clear").addEventListener("click", () => {
  request++;
  clearPad();
  for (const id of ["input-view", "evidence", "template"]) {
    const c = $(id); c.getContext("2d").clearRect(0, 0, c.width, c.height);
  }
  $("bars").replaceChildren();
  $("predicted").textContent = "\u2013";
  $("predicted").dataset.state = "empty";
  showError("");
});

function resetStrokeStyle() {
  ctx.strokeStyle = ctx.fillStyle = "#fff";
  ctx.lineWidth = 18; ctx.lineCap = ctx.lineJoin = "round";
}

async function start() {
  clearPad();
  resetStrokeStyle();
  try {
    const status = await call(API);
    const meta = await call(API + "/metadata");
    const defs = meta.metadata.signature_def.signature_def;
    explain = "explain" in defs;
    const dims = defs.serving_default.inputs.images.tensor_shape.dim.slice(1).map((d) => d.size);
    $("model-line").textContent = "Model " + NAME + ", version " +
      status.model_version_status[0].version + ", input " + dims.join("\u00d7") +
      (explain ? "" : " (an export without the explain signature: no evidence map)");
    if (!explain) for (const id of ["evidence", "template"]) $(id).closest("section").hidden = true;
  } catch (e) {
    showError("The model cannot be reached: " + (e.message || e));
  }
}
start();
