// The lab's page: a USB scanner types a box barcode, then its tubes (each ending with Enter);
// an empty line, the next box or "Box done" sends the box. One result is sent on "Save".
"use strict";

const BOX = /^BX[0-9A-Z]{4,30}$/;
const TUBE = /^TB[0-9A-Z]{6,30}$/;
let box = null;
let tubes = [];

function el(id) { return document.getElementById(id); }

function show(target, lines, bad) {
  const out = el(target);
  out.replaceChildren();
  for (const line of lines) {
    const p = document.createElement("p");
    p.textContent = line;
    if (bad(line)) p.className = "problem";
    out.append(p);
  }
}

function drawBox() {
  el("box").textContent = box || "—";
  el("count").textContent = String(tubes.length);
  el("tubes").replaceChildren(...tubes.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function sendBox() {
  if (box === null) return;
  const body = { box, tubes };
  box = null;
  tubes = [];
  drawBox();
  try {
    const receipt = await post("/api/receive", body);
    show("receipt", receipt.lines, (l) => l.trim().startsWith("!"));
  } catch (err) {
    show("receipt", ["未保存 · not stored: " + err.message], () => true);
  }
}

async function scanned(text) {
  const code = text.trim().toUpperCase();
  el("scan-note").textContent = "";
  if (code === "" || BOX.test(code)) {
    await sendBox();
    if (code !== "") { box = code; drawBox(); }
  } else if (box === null) {
    el("scan-note").textContent = "请先扫描转运箱 · scan the box barcode first: " + code;
  } else if (TUBE.test(code)) {
    if (!tubes.includes(code)) tubes.push(code);
    drawBox();
  } else {
    el("scan-note").textContent = "既不是试管也不是转运箱 · neither a tube nor a box: " + code;
  }
}

async function saveResult() {
  const body = {
    tube: el("tube").value.trim(),
    result: el("result").value,
    reason: el("reason").value.trim(),
  };
  try {
    const r = await post("/api/result", body);
    const lines = r.stored
      ? ["已保存 · stored" + (r.corrections ? " (更正 · correction)" : "")]
      : r.repeats ? ["已有此结果 · already known"] : [];
    for (const [township, v] of Object.entries(r.recall)) {
      lines.push(`召回名单 ${township} · recall list ${township}: ${v[0]}–${v[1]}`);
    }
    show("result-out", [...lines, ...r.errors], (l) => r.errors.includes(l));
    if (r.stored) { el("tube").value = ""; el("reason").value = ""; }
  } catch (err) {
    show("result-out", ["未保存 · not stored: " + err.message], () => true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const scan = el("scan");
  scan.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const text = scan.value;
    scan.value = "";
    scanned(text);
  });
  el("done").addEventListener("click", () => { sendBox(); scan.focus(); });
  el("save").addEventListener("click", saveResult);
});
