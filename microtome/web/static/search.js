// microtome: the search page of a static export. The export has no server to ask `/search?q=`, so
// this page reads `search/labels.json` (every exported unit's labels: [{model, layer, unit, shorthand,
// url, image, labels: [{label, score, source}]}], urls relative to the page) and ranks it by
// search.py's rule; a query that names a model, layer or unit is resolved by the jump box's
// resolver (microtome.js). Under Node, `require`-ing this file gives {match, findUnits} for tests.
(function () {
  "use strict";
  var MATCHES = ["part", "words", "label"];  // search.py's MATCHES: inside words, whole words, the whole label

  // How well `label` matches `query`: 2 the same, 1 whole words, 0 inside words, null not at all.
  function match(query, label) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    var text = label.toLowerCase();
    if (!words.length || !words.every(function (w) { return text.indexOf(w) >= 0; })) return null;
    if (words.join(" ") === text.split(/\s+/).filter(Boolean).join(" ")) return 2;
    var tokens = text.match(/[\p{L}\p{N}_'-]+/gu) || [];
    return words.every(function (w) { return tokens.indexOf(w) >= 0; }) ? 1 : 0;
  }

  // Compare two arrays element by element, as Python compares tuples.
  function order(a, b) {
    for (var i = 0; i < a.length; i++) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return 0;
  }

  // The best-matching label of each unit, best first: [{unit, label, score, source, match}]
  // (search.py's find_labels: whole-word matches before partial ones, then by score, then rank).
  function findUnits(units, query) {
    var found = [];
    units.forEach(function (u) {
      var best = null;
      u.labels.forEach(function (l) {
        var rank = match(query, l.label);
        if (rank === null) return;
        var score = typeof l.score === "number" ? l.score : 0;
        var key = [rank > 0, score, rank];
        if (!best || order(key, best.key) > 0) {
          best = { unit: u, label: l.label, score: score, source: String(l.source || ""), rank: rank, key: key };
        }
      });
      if (best) found.push(best);
    });
    var sortKey = function (f) { return [f.rank === 0, -f.score, -f.rank, f.unit.model, f.unit.layer, f.unit.unit]; };
    found.sort(function (a, b) { return order(sortKey(a), sortKey(b)); });
    return found.map(function (f) {
      return { unit: f.unit, label: f.label, score: f.score, source: f.source, match: MATCHES[f.rank] };
    });
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { match: match, findUnits: findUnits };
    return;
  }

  var list = document.getElementById("static-results");
  var q = (new URLSearchParams(location.search).get("q") || "").trim();
  if (!list || !q) return;
  var count = document.getElementById("static-count");
  document.querySelectorAll("input[name=q]").forEach(function (input) { input.value = q; });
  document.title = "Search: " + q + " \u00b7 microtome";

  var show = function (found) {
    count.textContent = found.length + " unit" + (found.length === 1 ? "" : "s") + " labelled \u201c" + q +
      "\u201d" + (found.length ? ", best first" : "");
    found.forEach(function (f) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = f.unit.url;
      a.className = "result";
      if (f.unit.image) {
        var img = document.createElement("img");
        img.src = f.unit.image; img.width = 96; img.height = 96; img.alt = f.unit.shorthand;
        a.appendChild(img);
      }
      var n = document.createElement("span"); n.className = "n"; n.textContent = f.unit.shorthand;
      var cap = document.createElement("span"); cap.className = "cap";
      cap.textContent = f.label + " \u00b7 " + f.score + " \u00b7 " + f.source;
      a.appendChild(n); a.appendChild(cap); li.appendChild(a); list.appendChild(li);
    });
  };
  fetch(list.dataset.index).then(function (r) { return r.json(); })
    .then(function (units) { show(findUnits(units, q)); })
    .catch(function () { count.textContent = "the labels of this export could not be read"; });

  // A query that names a model, layer or unit: link it, as the server's search page does.
  var named = document.getElementById("static-jump");
  if (named && window.microtome && window.microtome.jump) {
    window.microtome.jump(q, null).then(function (path) {
      var a = document.createElement("a");
      a.className = "jump-target";
      a.href = window.microtome.root + path;
      var p = path.replace(/^models\//, "").replace(/\/$/, "").split("/");  // MODEL[/LAYER[/UNIT]]
      a.textContent = p[0] + (p[1] ? "/" + p[1] : "") + (p[2] ? ":" + p[2] : "");
      named.textContent = "\u201c" + q + "\u201d names ";
      named.appendChild(a);
      named.hidden = false;
    }, function () { /* not a name: labels only */ });
  }
})();
