// Cascade review: keyboard-driven labelling. No framework, no build step.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var page = document.body.dataset.page;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) { throw new Error((data.error && data.error.message) || "HTTP " + r.status); }
        return data;
      });
    });
  }

  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  function onKeys(map) {
    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) { return; }
      if (typing(e.target)) {
        if (e.key === "Escape") { e.target.blur(); }
        return;
      }
      var fn = map[e.key] || (/^[0-9]$/.test(e.key) && map.digit);
      if (fn) { e.preventDefault(); fn(e.key); }
    });
  }

  document.querySelectorAll(".stage").forEach(function (stage) {
    stage.addEventListener("click", function () { stage.classList.toggle("revealed"); });
  });

  if (page === "queue") {
    var claim = document.getElementById("claim");
    if (claim) {
      onKeys({
        n: function () { claim.requestSubmit(); },
        u: function () {
          post(claim.dataset.undo).then(function (d) { window.location.assign(d.next); },
            function (err) { document.getElementById("status").textContent = err.message; });
        }
      });
    }
  }

  if (page !== "item") { return; }
  var started = performance.now();
  var stage = document.getElementById("stage");
  var form = document.getElementById("label-form");
  var category = document.getElementById("category");
  var note = document.getElementById("note");
  var status = document.getElementById("status");
  var busy = false;

  function say(text, bad) { status.textContent = text; status.classList.toggle("bad", !!bad); }
  function go(data) { window.location.assign(data.next); }
  function fail(err) { busy = false; say(err.message, true); }

  function label(value) {
    if (busy) { return; }
    busy = true;
    say("Saving " + value + "…");
    post(form.action, {
      label: value, category: category.value, note: note.value,
      seconds: (performance.now() - started) / 1000
    }).then(go, fail);
  }

  function undo() {
    if (busy) { return; }
    busy = true;
    say("Undoing your last label…");
    post(form.dataset.undo).then(go, fail);
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (e.submitter && e.submitter.value) { label(e.submitter.value); }
  });

  onKeys({
    a: function () { label("allow"); },
    b: function () { label("block"); },
    s: function () { label("skip"); },
    r: function () { stage.classList.toggle("revealed"); },
    g: function () { stage.classList.toggle("gray"); },
    u: undo,
    n: function () { note.focus(); },
    c: function () { category.focus(); },
    digit: function (key) {
      var i = Number(key);
      if (i < category.options.length) { category.selectedIndex = i; say("Category: " + (category.value || "none")); }
    }
  });
})();
