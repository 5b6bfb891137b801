// The gateway's live page: polls /api/board and redraws. No library, no CDN; every text
// from the network goes into the page through textContent, never as HTML.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const pollMs = Math.max(0.2, parseFloat(document.body.dataset.pollS) || 5) * 1000;
  const day = params.get("day") || "";
  let lang = params.get("lang") || localStorage.getItem("gateway-lang") || "zh";
  let board = null;
  let failed = false;

  const $ = (id) => document.getElementById(id);
  const T = () => window.I18N[lang] || window.I18N.zh;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setLang(next) {
    lang = window.I18N[next] ? next : "zh";
    localStorage.setItem("gateway-lang", lang);
    if (params.has("lang") && params.get("lang") !== lang) {
      params.set("lang", lang); // a reload or a shared link keeps the language chosen
      history.replaceState(null, "", "?" + params.toString());
    }
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const b of document.querySelectorAll("[data-lang]")) {
      b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    }
    render();
  }

  function clock(t) {
    if (t === null || t === undefined) return T().none;
    const d = new Date(t * 1000);
    return d.toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
  }

  function staticTexts() {
    const t = T();
    for (const node of document.querySelectorAll("[data-t]")) {
      const v = t[node.dataset.t];
      if (typeof v === "string") node.textContent = v;
    }
    document.title = t.title;
    const q = day ? "&day=" + encodeURIComponent(day) : "";
    $("report-csv").href = "/report?format=csv" + q;
    $("report-xlsx").href = "/report?format=xlsx" + q;
  }

  function card(key, label, value, extra) {
    return el("div", { class: "card", "data-total": key },
      el("span", { class: "label" }, label),
      el("strong", { class: "value" }, value),
      extra ? el("span", { class: "extra" }, extra) : null);
  }

  function renderTotals() {
    const t = T();
    const tot = board.totals;
    const c = tot.counts;
    const cards = [
      card("stations", t.total.stations, tot.stations, t.states_line(tot.states)),
      card("checkins", t.total.checkins, c.checkins),
      card("sampled", t.total.sampled, c.sampled),
      card("fevers", t.total.fevers, c.fevers),
      card("red_codes", t.total.red_codes, c.red_codes),
      card("tubes_sealed", t.total.tubes_sealed, c.tubes_sealed),
      card("tubes_voided", t.total.tubes_voided, c.tubes_voided),
      card("boxes_dispatched", t.total.boxes_dispatched, c.boxes_dispatched),
    ];
    if (tot.states.late) cards[0].classList.add("bad");
    $("totals").replaceChildren(...cards);
  }

  function renderChart() {
    const t = T();
    const hours = board.hourly;
    const W = 480, H = 150, left = 30, bottom = 22, top = 14;
    const max = Math.max(1, ...hours.map((h) => Math.max(h.checkins, h.sampled)));
    const bw = (W - left) / 24;
    const y = (v) => H - bottom - (v * (H - bottom - top)) / max;
    const root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", class: "hourly",
      "aria-label": `${t.per_hour}: ${hours.map((h) => h.checkins).reduce((a, b) => a + b, 0)}`,
    });
    root.append(svg("line", { x1: left, x2: W, y1: H - bottom, y2: H - bottom, class: "axis" }));
    root.append(svg("text", { x: left - 4, y: top + 4, class: "tick", "text-anchor": "end" }, max));
    root.append(svg("text", { x: left - 4, y: H - bottom, class: "tick", "text-anchor": "end" }, 0));
    let path = "";
    hours.forEach((h, i) => {
      const x = left + i * bw;
      const bar = svg("rect", {
        x: x + 2, y: y(h.checkins), width: bw - 4, height: H - bottom - y(h.checkins),
        class: "bar", "data-hour": h.hour, "data-checkins": h.checkins,
      });
      bar.append(svg("title", {}, `${String(h.hour).padStart(2, "0")}:00 ${t.chart_checkins} ${h.checkins}, ${t.chart_sampled} ${h.sampled}`));
      root.append(bar);
      path += `${i ? "L" : "M"}${x + bw / 2},${y(h.sampled)}`;
      if (i % 3 === 0) {
        root.append(svg("text", { x: x + bw / 2, y: H - 5, class: "tick", "text-anchor": "middle" }, String(h.hour).padStart(2, "0")));
      }
    });
    root.append(svg("path", { d: path, class: "line" }));
    const legend = el("p", { class: "legend" },
      el("span", { class: "key bar-key" }), " " + t.chart_checkins + "  ",
      el("span", { class: "key line-key" }), " " + t.chart_sampled);
    $("chart").replaceChildren(root, legend);
  }

  function row(box, label, value, key) {
    box.append(el("div", { class: "kv" }, el("span", { class: "lbl" }, label),
      el("span", { class: "v", "data-field": key }, value)));
  }

  function num(v, unit) {
    return v === null || v === undefined ? T().none : v + (unit || "");
  }

  function megabytes(mb) {
    if (mb === null || mb === undefined) return T().none;
    return mb >= 1024 ? (mb / 1024).toFixed(1) + " GB" : Math.round(mb) + " MB";
  }

  function tile(s) {
    const t = T();
    const name = board.townships > 1 ? `${s.township} · ${s.station}` : s.station;
    const badge = el("span", { class: "badge", "data-field": "state" }, t.state[s.state] || s.state);
    const node = el("article", {
      class: "tile state-" + s.state, "data-station": `${s.township}/${s.station}`, "data-state": s.state,
    }, el("header", null, el("h3", null, name), badge));
    if (s.late.length) {
      node.append(el("p", { class: "why", "data-field": "why" }, s.late.map((w) => t.why[w] || w).join("；")));
    }
    if (s.alerts.length) {
      node.append(el("p", { class: "alerts", "data-field": "alerts" },
        t.field.alerts + ": " + s.alerts.map((a) => t.alert[a] || a).join(", ")));
    }
    const c = s.counts;
    const stat = (key, label) =>
      el("div", { class: "stat" }, el("strong", { "data-field": key }, c[key]), el("span", null, label));
    const stats = el("div", { class: "stats" },
      stat("checkins", t.field.checkins), stat("sampled", t.field.sampled),
      stat("fevers", t.field.fevers), stat("red_codes", t.field.red_codes));
    const line = (label, key, value) =>
      el("p", { class: "line" }, el("span", { class: "lbl" }, label + " "), el("span", { "data-field": key }, value));
    const decisions = line(t.field.decisions, "decisions",
      ["pool", "single", "isolate", "refer"].map((d) => `${t.decision[d]} ${c.decisions[d] || 0}`).join(" · "));
    const tubes = line(t.field.tubes, "tubes", `${c.tubes_opened} / ${c.tubes_sealed} / ${c.tubes_voided}`);
    tubes.append(el("span", { class: "lbl" }, " · " + t.field.boxes_dispatched + " "),
      el("span", { "data-field": "boxes_dispatched" }, c.boxes_dispatched));
    const health = el("div", { class: "health" });
    row(health, t.field.last_seen, s.silent_s === null ? t.none : t.ago(s.silent_s), "last_seen");
    row(health, t.field.outbox_depth, num(s.outbox_depth), "outbox_depth");
    row(health, t.field.oldest, s.oldest_undelivered_age_s === null || s.oldest_undelivered_age_s === undefined ? t.none : t.age(s.oldest_undelivered_age_s), "oldest");
    row(health, t.field.queue, num(s.queue_length), "queue");
    row(health, t.field.disk, megabytes(s.disk_free_mb), "disk");
    row(health, t.field.cpu, num(s.cpu_temperature_c, " °C"), "cpu");
    row(health, t.field.release, s.release || t.none, "release");
    row(health, t.field.through, s.through, "through");
    node.append(stats, decisions, tubes, health);
    return node;
  }

  function render() {
    staticTexts();
    $("link").textContent = failed ? T().link_lost : "";
    if (!board) return;
    board.townships = new Set(board.stations.map((s) => s.township)).size;
    if (document.activeElement !== $("day")) $("day").value = board.day;
    $("updated").textContent = clock(board.generated_at);
    renderTotals();
    renderChart();
    $("empty").hidden = board.stations.length > 0;
    $("stations").replaceChildren(...board.stations.map(tile));
  }

  async function poll() {
    try {
      const q = day ? "?day=" + encodeURIComponent(day) : "";
      const res = await fetch("/api/board" + q, { cache: "no-store", credentials: "same-origin" });
      if (!res.ok) throw new Error(res.status);
      board = await res.json();
      failed = false;
    } catch (e) {
      failed = true;
    }
    render();
    document.body.dataset.generatedAt = board ? board.generated_at : "";
    setTimeout(poll, pollMs);
  }

  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => setLang(b.dataset.lang));
  }
  $("day").addEventListener("change", (e) => {
    if (!e.target.value) return;
    params.set("day", e.target.value); // another day: its board, its report links
    location.search = params.toString();
  });
  setLang(lang);
  poll();
})();
