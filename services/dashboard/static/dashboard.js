// Cascade cost dashboard: fetches /dashboard/api/* and draws uPlot charts; refreshes itself.
(function () {
  "use strict";
  var cfg = window.CASCADE_DASHBOARD;
  var span = cfg.span;
  var charts = {};
  window.CASCADE_CHARTS = charts; // for debugging from the console, and for the browser test
  var C = {
    compute: "#2f6fdf", human: "#e08a1e", error: "#d43d51", total: "#222",
    stage1: "#2f6fdf", stage2: "#7a4fd6", cache: "#3aa676", audit: "#8a8a8a",
    p50: "#3aa676", p95: "#e08a1e", p99: "#d43d51", screened: "#8a8a8a"
  };

  function $(id) { return document.getElementById(id); }
  function money(x, digits) { return x == null ? "–" : "$" + x.toFixed(digits); }
  // One percentage formatter (a second function of the same name would replace this one
  // everywhere: declarations are hoisted). Tiles use one decimal; the quality panel asks more.
  function pct(x, digits = 1) { return x == null ? "–" : (100 * x).toFixed(digits) + "%"; }
  function secs(x) {
    if (x == null) { return "–"; }
    if (x < 1) { return (1000 * x).toFixed(0) + " ms"; }
    if (x < 120) { return x.toFixed(x < 10 ? 2 : 0) + " s"; }
    return (x / 60).toFixed(x < 3600 ? 1 : 0) + " min";
  }

  function getJSON(path) {
    var sep = path.indexOf("?") < 0 ? "?" : "&";
    return fetch(cfg.api + path + sep + "span=" + encodeURIComponent(span), {
      headers: { Accept: "application/json" }, credentials: "same-origin"
    }).then(function (r) {
      if (r.status === 401) { window.location.reload(); }
      if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
      return r.json();
    });
  }

  // Threshold-set activations as dashed vertical lines labelled with the version.
  function markerPlugin() {
    return {
      hooks: {
        draw: [function (u) {
          var changes = u.cascadeChanges || [];
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
          ctx.save();
          ctx.strokeStyle = "#7a4fd6";
          ctx.fillStyle = "#7a4fd6";
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
          changes.forEach(function (c) {
            var x = Math.round(u.valToPos(c.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.fillText("v" + c.version, x + 4 * devicePixelRatio, top + 12 * devicePixelRatio);
          });
          ctx.restore();
        }]
      }
    };
  }

  function size(el) {
    return { width: Math.max(260, el.clientWidth), height: el.parentNode.classList.contains("wide") ? 260 : 200 };
  }

  function draw(id, series, data, changes, yfmt) {
    var el = $(id);
    if (charts[id]) {
      charts[id].cascadeChanges = changes;
      charts[id].setData(data);
      return;
    }
    var dims = size(el);
    var opts = {
      width: dims.width, height: dims.height,
      plugins: [markerPlugin()],
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 72, values: function (u, vals) { return vals.map(yfmt); } }],
      series: [{}].concat(series.map(function (s) {
        return {
          label: s.label, stroke: C[s.key] || "#444", width: s.width || 1.5,
          fill: s.fill || undefined, spanGaps: false,
          value: function (u, v) { return v == null ? "–" : yfmt(v); }
        };
      }))
    };
    var chart = new uPlot(opts, data, el);
    chart.cascadeChanges = changes;
    charts[id] = chart;
  }

  function sumSeries(lists) {
    return lists[0].map(function (_, i) {
      var any = false, s = 0;
      lists.forEach(function (l) { if (l[i] != null) { any = true; s += l[i]; } });
      return any ? s : null;
    });
  }

  function renderCost(d) {
    var cpi = d.cost_per_image;
    var total = sumSeries([cpi.compute, cpi.human, cpi.error]);
    var dollars = function (v) { return v === 0 ? "$0" : "$" + (v >= 0.01 ? v.toFixed(3) : v.toPrecision(2)); };
    draw("c-cost", [
      { key: "total", label: "total", width: 2, fill: "rgba(34,34,34,0.06)" },
      { key: "compute", label: "compute" }, { key: "human", label: "human" }, { key: "error", label: "errors" }
    ], [d.t, total, cpi.compute, cpi.human, cpi.error], d.changes, dollars);
    var rate = function (v) { return v === 0 ? "0" : v < 1 ? v.toPrecision(2) : v.toFixed(v < 10 ? 1 : 0); };
    draw("c-ips", [{ key: "total", label: "decided" }, { key: "screened", label: "screened (stage 1)" }],
      [d.t, d.images_per_s, d.screened_per_s], d.changes, rate);
    var share = function (v) { return (100 * v).toFixed(0) + "%"; };
    draw("c-share", [
      { key: "stage1", label: "stage 1" }, { key: "stage2", label: "stage 2" },
      { key: "human", label: "human" }, { key: "cache", label: "cache" }
    ], [d.t, d.share.stage1, d.share.stage2, d.share.human, d.share.cache], d.changes, share);
    draw("c-rates", [
      { key: "stage2", label: "escalated" }, { key: "human", label: "to humans" }, { key: "audit", label: "audit" }
    ], [d.t, d.escalation_rate, d.human_rate, d.audit_rate], d.changes, share);
    var s = d.summary, tot = d.totals;
    $("k-cpk").textContent = money(s.cost_per_1000, 2);
    $("k-month").textContent = money(s.monthly_projection, 0);
    $("k-ips").textContent = rate(tot.images / Math.max(1, d.t.length * d.step_s));
    $("k-esc").textContent = pct(tot.escalation_rate);
    $("k-audit").textContent = pct(tot.audit_rate);
  }

  function renderLatency(d) {
    draw("c-latency", [{ key: "p50", label: "p50" }, { key: "p95", label: "p95" }, { key: "p99", label: "p99" }],
      [d.t, d.p50, d.p95, d.p99], d.changes, secs);
    $("k-p95").textContent = secs(d.summary.p95);
  }

  function renderQueues(d) {
    var rows = [];
    Object.keys(d.queues).forEach(function (k) { rows.push(["queue " + k, d.queues[k]]); });
    Object.keys(d.review_backlog).forEach(function (k) { rows.push(["review: " + k, d.review_backlog[k]]); });
    var max = rows.reduce(function (m, r) { return Math.max(m, r[1]); }, 1);
    var el = $("c-queues");
    el.textContent = "";
    if (!rows.length) { el.textContent = "no queue data yet"; }
    rows.forEach(function (r) {
      var row = document.createElement("div");
      row.className = "bar";
      var label = document.createElement("span"); label.textContent = r[0];
      var track = document.createElement("i");
      var fill = document.createElement("em"); fill.style.width = (100 * r[1] / max) + "%";
      track.appendChild(fill);
      var value = document.createElement("b"); value.textContent = String(Math.round(r[1]));
      row.append(label, track, value);
      el.appendChild(row);
    });
    if (d.review_oldest_age_s != null) {
      var age = document.createElement("p");
      age.textContent = "oldest waiting review: " + (d.review_oldest_age_s / 60).toFixed(1) + " min";
      el.appendChild(age);
    }
  }

  function post(url, label) {
    if (!window.confirm(label + "?")) { return; }
    fetch(url, { method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf },
      body: "{}" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } refresh(); })
      .catch(function (e) { window.alert(label + " failed: " + e.message); });
  }

  function renderThresholds(d) {
    $("k-ver").textContent = "v" + d.active;
    var list = $("thresholds");
    list.textContent = "";
    d.sets.forEach(function (s) {
      var li = document.createElement("li");
      li.className = s.status;
      var text = document.createElement("span");
      text.textContent = "v" + s.version + " · " + s.status + " · [" +
        s.thresholds.map(function (x) { return x.toFixed(2); }).join(", ") + "]" +
        (s.expected_cost != null ? " · expected $" + s.expected_cost.toFixed(4) + "/image" : "");
      li.appendChild(text);
      if (cfg.isAdmin && s.status === "proposed") {
        var approve = document.createElement("button");
        approve.textContent = "approve";
        approve.onclick = function () { post("/v1/thresholds/" + s.version + "/activate", "Activate v" + s.version); };
        li.appendChild(approve);
      }
      if (cfg.isAdmin && s.active) {
        var back = document.createElement("button");
        back.textContent = "roll back";
        back.onclick = function () { post("/v1/thresholds/rollback", "Roll back v" + s.version); };
        li.appendChild(back);
      }
      list.appendChild(li);
    });
  }


  function renderQuality(d) {
    var rows = [], c = d.certificate, o = d.ood;
    if (c == null) {
      rows.push(["certificate", "none: the built-in defaults are in force"]);
    } else {
      rows.push(["certificate", "v" + c.version + (c.certified ? " certified" : " not certified") +
        (c.fallback ? " (allows nothing automatically)" : "")]);
      rows.push(["miss rate", "≤ " + pct(c.alpha, 2) + " with probability " + pct(1 - c.delta, 0) +
        "; estimated " + pct(c.miss_rate_estimate, 3) +
        (c.miss_interval ? " [" + pct(c.miss_interval[0], 3) + ", " + pct(c.miss_interval[1], 3) + "]" : "")]);
      rows.push(["false blocks", (c.beta != null ? "≤ " + pct(c.beta, 2) + "; " : "") + "estimated " +
        pct(c.false_block_rate_estimate, 3) + (c.false_block_interval ? " [" +
        pct(c.false_block_interval[0], 3) + ", " + pct(c.false_block_interval[1], 3) + "]" : "")]);
      rows.push(["audit labels", c.audit_images + (c.design ? " (" + c.design + ")" : "")]);
    }
    rows.push(["out of distribution → human", o.to_human + " of " + o.images + " images (" + pct(o.share, 2) + ")"]);
    rows.push(["last drift alarm", d.last_drift_alarm || "none"]);
    var list = $("quality");
    list.textContent = "";
    rows.forEach(function (r) {
      var dt = document.createElement("dt"); dt.textContent = r[0];
      var dd = document.createElement("dd"); dd.textContent = r[1];
      list.append(dt, dd);
    });
  }

  function refresh() {
    var asked = span;
    // A slow answer for a window the user has since left must not overwrite the new one.
    function current(render) { return function (d) { if (asked === span) { render(d); } }; }
    return Promise.all([
      getJSON("/cost").then(current(renderCost)),
      getJSON("/latency").then(current(renderLatency)),
      getJSON("/queues").then(current(renderQueues)),
      getJSON("/thresholds").then(current(renderThresholds)),
      getJSON("/decisions").then(current(renderQuality))
    ]).then(function () {
      if (asked !== span) { return; }
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.loaded = "true";
      document.body.dataset.span = asked;
    }).catch(function (e) {
      $("updated").textContent = "update failed: " + e.message;
      console.error(e);
    });
  }

  document.querySelectorAll("#spans button").forEach(function (b) {
    b.onclick = function () {
      span = b.dataset.span;
      document.querySelectorAll("#spans button").forEach(function (o) { o.classList.toggle("on", o === b); });
      refresh();
    };
  });
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) { charts[id].setSize(size($(id))); });
  });
  refresh();
  setInterval(refresh, cfg.refreshMs);
})();
