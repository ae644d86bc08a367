(function () {
"use strict";
var D = JSON.parse(document.getElementById("normconf-data").textContent);
var M = {};
D.metrics.forEach(function (name, i) { M[name] = i; });

function el(tag, attrs) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) {
    var v = attrs[k];
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
  }
  for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
  return e;
}
function add(parent) {  // append the children that exist (Element.append would print "null")
  for (var i = 1; i < arguments.length; i++) {
    var kid = arguments[i];
    if (kid !== null && kid !== undefined) parent.append(kid instanceof Node ? kid : String(kid));
  }
}
function fmt(v) {
  if (v === null || v === undefined) return "\u2014";
  if (typeof v === "number") {
    if (v === 0) return "0";
    var a = Math.abs(v);
    return (a >= 1e-3 && a < 1e5) ? String(+v.toPrecision(4)) : v.toExponential(3);
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function text(v) {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    return Object.keys(v).map(function (k) { return k + " " + text(v[k]); }).join(", ");
  }
  return typeof v === "string" ? v : fmt(v);
}
function link(url) {
  if (!/^https?:\/\//i.test(url)) return document.createTextNode(url);
  return el("a", {href: url, rel: "noreferrer", text: url});
}
function shq(s) { return /^[A-Za-z0-9_\/.:=@,+-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }
function pyrepr(s) { return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'"; }
function badge(s) { return el("span", {cls: "n st-" + s, text: s}); }
function kv(rows) {
  var t = el("table", {cls: "kv"});
  rows.forEach(function (r) {
    if (r[1] !== undefined && r[1] !== null && r[1] !== "") t.append(el("tr", null, el("th", {text: r[0]}), el("td", null, r[1])));
  });
  return t;
}
function bucket(ratio) {  // the heatmap's colour classes: half decades from 1e-4 (b0) to 1e4 (b16)
  return "b" + Math.max(0, Math.min(16, Math.round((Math.log10(Math.max(ratio, 1e-12)) + 4) * 2)));
}

function describe(body, c) {
  add(body, c.desc ? el("p", {text: c.desc}) : null);
  body.append(kv([["case", el("code", {text: c.k})], ["source", c.src ? link(c.src) : null], ["op", c.op],
    ["dtype", c.dtype], ["layout", c.layout], ["shape", c.shape ? "[" + c.shape.join(", ") + "]" : null],
    ["tags", c.tags.join(", ")], ["file", c.file]]));
  var params = Object.keys(c.params || {});
  if (params.length) {
    body.append(el("h3", {text: "Parameters"}));
    body.append(kv(params.map(function (k) { return [k, el("code", {text: text(c.params[k])})]; })));
  }
  var inp = c.input || {};
  var rows = [["values", inp.generator ? el("code", {text: "generator " + text(inp.generator)}) : "literal data"]];
  ["min", "max", "mean", "std", "condition"].forEach(function (k) {
    if (k in inp) rows.push([k === "condition" ? "condition (max |mean| / std)" : k, fmt(inp[k])]);
  });
  Object.keys(c.tol || {}).forEach(function (k) {
    // scale "max": the atol is in units of the output's largest |expected| (gradients)
    var unit = c.tol[k].scale === "max" ? " \u00d7 max|expected|" : "";
    rows.push(["tolerance " + k, "atol " + fmt(c.tol[k].atol) + unit + ", rtol " + fmt(c.tol[k].rtol)]);
  });
  body.append(el("h3", {text: "Input"}), kv(rows));
}

function results(body, c) {
  body.append(el("h3", {text: "Results"}));
  var t = el("table", {cls: "res"}), head = el("tr");
  ["adapter", "status", "output", "max_abs", "max_rel", "max_ulp", "worst_index", "error/tol", "atol", "rtol"]
    .forEach(function (h) { head.append(el("th", {text: h})); });
  t.append(head);
  c.res.forEach(function (r) {
    var names = Object.keys(r.o || {}), span = 0;
    names.forEach(function (name) { var x = r.o[name][D.metrics.length]; span += 1 + (x ? Object.keys(x).length : 0); });
    var first = el("tr", {"data-a": r.a});
    first.append(el("td", {rowspan: Math.max(1, span)}, el("b", {text: r.a}),
                    r.src ? el("div", {cls: "meta"}, el("small", {text: r.src})) : null));
    first.append(el("td", {rowspan: Math.max(1, span)}, badge(r.s), r.v ? el("div", {
      cls: "vd " + r.v[0] + (r.v[3] ? "" : " ns"),
      title: "the verdict rests on " + r.v[2] + " at " + fmt(r.v[1]) + " \u00d7 its tolerance",
      text: r.v[0] + " (" + r.v[2] + " " + fmt(r.v[1]) + "\u00d7" + (r.v[0] === "fragile" && !r.v[3] ? ", not strict" : "") + ")"
    }) : null));
    if (!names.length) { first.append(el("td", {colspan: 8, text: "no output compared"})); t.append(first); }
    names.forEach(function (name, i) {
      var m = r.o[name], row = i === 0 ? first : el("tr", {"data-a": r.a});
      row.append(el("td", {text: name}));
      ["max_abs", "max_rel", "max_ulp"].forEach(function (k) { row.append(el("td", {cls: "num", text: fmt(m[M[k]])})); });
      row.append(el("td", {text: m[M.worst_index] ? "[" + m[M.worst_index].join(", ") + "]" : "\u2014"}));
      row.append(el("td", {cls: "num" + (m[M.ok] === false ? " bad" : ""), text: fmt(m[M.ratio])}));
      row.append(el("td", {cls: "num", text: fmt(m[M.atol])}), el("td", {cls: "num", text: fmt(m[M.rtol])}));
      t.append(row);
      var extra = m[D.metrics.length] || {};  // against expect.values, against the native convention
      Object.keys(extra).forEach(function (key) {
        var line = name + " " + key.replace("_", " ") + ": " + text(extra[key]).replace("ratio", "error/tol");
        t.append(el("tr", {"data-a": r.a, cls: "why"}, el("td", {colspan: 8, text: line})));
      });
    });
    var why = [];
    if (r.r) why.push("reason: " + r.r);
    if (r.x) why.push("explanation: " + (r.x.cause ? "[" + r.x.cause + "] " : "") + (r.x.detail || "")
                      + (r.x.params ? " (" + text(r.x.params) + ")" : ""));
    if (r.nat) why.push("native conventions in play: " + text(r.nat));
    if (r.pd) why.push("platform dependent: known_discrepancies.yaml #" + r.pd[0] + " accepts a pass or its mismatch; "
                       + (r.pd[1] === "agrees" ? "it agrees here" : "the mismatch was seen here"));
    if (r.uo) why.push("outputs not compared: " + text(r.uo));
    if (r.tb) why.push("traceback:\n" + r.tb);
    if (why.length || r.link) {
      var cell = el("td", {colspan: 10, text: why.join("\n")});
      if (r.link) add(cell, why.length ? "\n" : "", "see ", link(r.link));
      t.append(el("tr", {cls: "why", "data-a": r.a}, cell));
    }
  });
  body.append(t);
}

function matrix(body, c) {
  if (!c.m || !c.m.labels) return;
  body.append(el("h3", {text: "Pairwise max |a \u2212 b| (largest over outputs)"}));
  var labels = c.m.labels, ls = c.m.ls || {}, mx = el("table", {cls: "mx"}), hr = el("tr", null, el("th"));
  labels.forEach(function (l) { hr.append(el("th", {text: l})); });
  mx.append(hr);
  var atol = c.tol && c.tol.y ? c.tol.y.atol : null, crossRun = false;
  labels.forEach(function (a, i) {
    var tr = el("tr", null, el("th", {text: a}));
    labels.forEach(function (b, j) {
      var v = c.m.v && c.m.v[i] ? c.m.v[i][j] : null;
      if (v === null || v === undefined) {
        var apart = ls[a] && ls[b] && !ls[a].some(function (s) { return ls[b].indexOf(s) >= 0; });
        crossRun = crossRun || apart;
        tr.append(el("td", {cls: "na", text: "n/a", title: apart
          ? "never computed together: " + a + " and " + b + " come from different runs, whose arrays are not kept"
          : "no output in common"}));
        return;
      }
      var cls = typeof v === "string" ? "b16" : atol ? bucket(v / atol) : "";
      tr.append(el("td", {cls: cls, text: fmt(v),
                          title: a + " vs " + b + (atol && typeof v === "number" ? ": " + fmt(v / atol) + " \u00d7 atol of y" : "")}));
    });
    mx.append(tr);
  });
  body.append(mx);
  if (c.m.why && c.m.why.length) {
    body.append(el("h3", {text: "Why they differ"}));
    var ul = el("ul", {cls: "why"});
    c.m.why.forEach(function (w) { ul.append(el("li", {text: w[0] + " vs " + w[1] + ": " + w[2]})); });
    body.append(ul);
  }
  if (crossRun) body.append(el("p", {cls: "legend", text: "n/a: these two were never in the same run. A merged "
    + "report keeps each run's metrics, not its arrays, so they cannot be compared here."}));
}

function reproduce(body, c) {
  body.append(el("h3", {text: "Reproduce"}));
  var lines = [];
  c.res.forEach(function (r) {
    if (r.s === "unavailable") return;
    lines.push("pytest " + shq(c.path + "::" + c.k + "[" + r.a + "]") + c.opts);
    lines.push("python -c \"import normconf, pprint; pprint.pprint(normconf.reproduce("
               + [pyrepr(c.path), pyrepr(c.id), pyrepr(r.a)].join(", ") + "))\"");
  });
  body.append(el("pre", {cls: "repro", text: lines.join("\n") || "(no adapter ran this case)"}));
}

function ensure(details) {
  var body = details.querySelector(".body");
  if (body.dataset.done) return;
  var c = D.cases[+details.dataset.c];
  describe(body, c); results(body, c); matrix(body, c); reproduce(body, c);
  body.dataset.done = "1";
}
function openCase(i, adapter) {
  var d = document.getElementById(D.cases[i].a);
  if (!d) return;
  if (d.hidden) reset();
  ensure(d);
  d.open = true;
  d.querySelectorAll("tr.hl").forEach(function (tr) { tr.classList.remove("hl"); });
  if (adapter) d.querySelectorAll("tr[data-a]").forEach(function (tr) {
    if (tr.getAttribute("data-a") === adapter) tr.classList.add("hl");
  });
  d.scrollIntoView({block: "start"});
  d.classList.remove("flash"); void d.offsetWidth; d.classList.add("flash");
}
document.addEventListener("toggle", function (ev) {
  var d = ev.target;
  if (d.classList && d.classList.contains("case") && d.open) ensure(d);
}, true);

var hm = document.getElementById("hm");
if (hm) hm.addEventListener("click", function (ev) {
  var cell = ev.target.closest(".cell");
  if (cell) openCase(+cell.closest(".row").dataset.c, D.adapters[+cell.dataset.a]);
});
document.querySelectorAll("a[href^='#case-']").forEach(function (a) {
  a.addEventListener("click", function (ev) {
    var d = document.getElementById(a.getAttribute("href").slice(1));
    if (!d || d.dataset.c === undefined) return;
    ev.preventDefault();
    openCase(+d.dataset.c, null);
    history.replaceState(null, "", a.getAttribute("href"));
  });
});

// Filters: a case is shown when its op, dtype and tag match and it has a result for the chosen adapter
// with the chosen status; the heatmap's columns of other adapters are hidden.
var selects = document.querySelectorAll("select[data-filter]");
var colStyle = document.createElement("style");
document.head.append(colStyle);
var rows = hm ? Array.prototype.slice.call(hm.querySelectorAll(".row")) : [];
var sections = D.cases.map(function (c) { return document.getElementById(c.a); });
function value(name) { var s = document.getElementById("f-" + name); return s ? s.value : ""; }
function apply() {
  var f = {op: value("op"), adapter: value("adapter"), dtype: value("dtype"), status: value("status"),
           verdict: value("verdict"), tag: value("tag")};
  var col = D.adapters.indexOf(f.adapter);
  colStyle.textContent = col >= 0 ? "#hm [data-a]:not([data-a=\"" + col + "\"]){display:none}" : "";
  var shown = 0;
  D.cases.forEach(function (c, i) {
    var ok = (!f.op || c.op === f.op) && (!f.dtype || c.dtype === f.dtype) && (!f.tag || c.tags.indexOf(f.tag) >= 0);
    if (ok && (f.adapter || f.status || f.verdict)) ok = c.res.some(function (r) {
      return (!f.adapter || r.a === f.adapter) && (!f.status || r.s === f.status) && verdictIs(r, f.verdict);
    });
    if (rows[i]) rows[i].hidden = !ok;
    if (sections[i]) sections[i].hidden = !ok;
    if (ok) shown++;
  });
  document.getElementById("f-count").textContent = "showing " + shown + " of " + D.cases.length + " cases";
}
function verdictIs(r, want) {  // "firm", "fragile" or "fragile, strict" (enforced: no platform_dependent entry)
  if (!want) return true;
  if (!r.v) return false;
  return want === "fragile, strict" ? r.v[0] === "fragile" && r.v[3] : r.v[0] === want;
}
function reset() { selects.forEach(function (s) { s.value = ""; }); apply(); }
selects.forEach(function (s) { s.addEventListener("change", apply); });
document.getElementById("f-reset").addEventListener("click", reset);
apply();

if (location.hash) {
  var id = location.hash.slice(1);
  try { id = decodeURIComponent(id); } catch (e) { /* a bare '%' in the hash */ }
  var target = document.getElementById(id);
  if (target && target.dataset.c !== undefined) openCase(+target.dataset.c, null);
}
window.normconfReady = performance.now();  // the browser test reads it
})();
