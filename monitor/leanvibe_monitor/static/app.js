/* LeanVibe monitoring dashboard: plain JS, no build step, no external resources.
 *
 * Reads /api/overview, /api/latency (one call per environment) and /api/deployments, renders the environment
 * cards, the response-time chart (Chart.js, linear x axis of epoch ms) with deployment markers as DOM elements
 * over it, and the deployments table. Every value that comes from the API goes into the DOM through
 * textContent or setAttribute, never through innerHTML: event reasons and texts come from webhooks.
 */
(function () {
  "use strict";

  var REFRESH_MS = 15000;
  var DEPLOYMENT_LIMIT = 20;
  // Per environment and window: a 30-day window at one round every 5 s would be half a million points.
  // The service keeps the slowest round of each time bucket (spikes stay visible); services without it send all.
  var MAX_POINTS = 2000;
  var WINDOWS = ["24h", "7d", "30d"];
  // Okabe-Ito colours: told apart with most colour-vision deficiencies. Red is kept for failures.
  var PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#6b4c9a", "#8c6d1f", "#4d4d4d"];
  var FAILED_COLOR = "#c62828";
  var DOWN_COLOR = "#8e0000";
  var MINUTE = 60 * 1000;
  var HOUR = 60 * MINUTE;
  var DAY = 24 * HOUR;
  var TICK_STEPS = [5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR,
    12 * HOUR, DAY, 2 * DAY, 5 * DAY, 7 * DAY];
  var EVENT_OUTCOME = {
    deploy: "deploying",
    step: "traffic step",
    promote: "promoted",
    rollback: "rolled back",
    failure: "failed"
  };
  var EVENT_FLAG = { deploy: "D", step: "S", promote: "P", rollback: "R", failure: "F" };

  var state = {
    window: "24h",
    chart: null,
    markers: [],
    colors: {},
    inFlight: false,
    again: false,
    rendered: false
  };

  // ---------------------------------------------------------------- helpers

  /** Build an element. attrs: plain attributes (set with setAttribute); children: nodes or strings (text). */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) {
          return;
        }
        if (name === "className") {
          node.className = value;
        } else {
          node.setAttribute(name, value === true ? "" : String(value));
        }
      });
    }
    appendAll(node, children);
    return node;
  }

  function appendAll(node, children) {
    if (children === null || children === undefined) {
      return;
    }
    if (!Array.isArray(children)) {
      children = [children];
    }
    children.forEach(function (child) {
      if (child === null || child === undefined || child === false) {
        return;
      }
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
  }

  function pad(number) {
    return (number < 10 ? "0" : "") + number;
  }

  function toMs(value) {
    if (value === null || value === undefined || value === "") {
      return null;
    }
    if (typeof value === "number") {
      return value;
    }
    var parsed = Date.parse(value);
    return isNaN(parsed) ? null : parsed;
  }

  function formatDateTime(ms) {
    if (ms === null) {
      return "unknown time";
    }
    var date = new Date(ms);
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  /** Time of day for today, the full date and time otherwise. */
  function formatWhen(ms) {
    if (ms === null) {
      return "unknown time";
    }
    var date = new Date(ms);
    if (date.toDateString() === new Date().toDateString()) {
      return formatClock(ms) + ":" + pad(date.getSeconds());
    }
    return formatDateTime(ms);
  }

  function formatClock(ms) {
    var date = new Date(ms);
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function formatTick(ms, step) {
    var date = new Date(ms);
    var day = date.getDate() + " " + MONTHS[date.getMonth()];
    if (step >= DAY) {
      return day;
    }
    if (date.getHours() === 0 && date.getMinutes() === 0) {
      return [formatClock(ms), day];
    }
    return formatClock(ms);
  }

  function tickStep(span) {
    for (var i = 0; i < TICK_STEPS.length; i++) {
      if (span / TICK_STEPS[i] <= 8) {
        return TICK_STEPS[i];
      }
    }
    return TICK_STEPS[TICK_STEPS.length - 1];
  }

  /** Ticks on round local times (every 3 h from midnight, every day at midnight...) between min and max. */
  function alignedTicks(min, max, step) {
    var ticks = [];
    var day = new Date(min);
    day.setHours(0, 0, 0, 0);
    if (step < DAY) {
      var t = day.getTime() + Math.ceil((min - day.getTime()) / step) * step;
      for (; t <= max && ticks.length < 100; t += step) {
        ticks.push({ value: t });
      }
      return ticks;
    }
    if (day.getTime() < min) {
      day.setDate(day.getDate() + 1);
    }
    for (; day.getTime() <= max && ticks.length < 100; day.setDate(day.getDate() + Math.round(step / DAY))) {
      ticks.push({ value: day.getTime() });
    }
    return ticks;
  }

  function formatPct(value) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(2) + " %" : null;
  }

  function formatMs(value) {
    if (typeof value !== "number" || !isFinite(value)) {
      return "–";
    }
    return value >= 1000 ? (value / 1000).toFixed(2) + " s" : Math.round(value) + " ms";
  }

  /** API rows may carry reasons / weights as decoded JSON or as JSON text. */
  function decoded(value) {
    if (typeof value === "string") {
      var text = value.trim();
      if (text.charAt(0) === "[" || text.charAt(0) === "{") {
        try {
          return JSON.parse(text);
        } catch (err) {
          return value;
        }
      }
    }
    return value;
  }

  function asList(value) {
    value = decoded(value);
    if (value === null || value === undefined || value === "") {
      return [];
    }
    if (!Array.isArray(value)) {
      return [String(value)];
    }
    return value.filter(function (item) {
      return item !== null && item !== undefined && String(item).trim() !== "";
    }).map(String);
  }

  function asWeights(value) {
    value = decoded(value);
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      return [];
    }
    return Object.keys(value).map(function (version) {
      var pct = Number(value[version]);
      return { version: version, pct: isFinite(pct) ? Math.max(0, Math.min(100, pct)) : 0 };
    }).sort(function (a, b) {
      return b.pct - a.pct || (a.version < b.version ? -1 : 1);
    });
  }

  function versionChange(row) {
    var version = row.version || null;
    if (row.to_version && row.to_version !== version) {
      return (version || "?") + " → " + row.to_version;
    }
    if (row.from_version && row.from_version !== version) {
      return row.from_version + " → " + (version || "?");
    }
    return version || "–";
  }

  function colorFor(name) {
    if (!state.colors[name]) {
      state.colors[name] = PALETTE[Object.keys(state.colors).length % PALETTE.length];
    }
    return state.colors[name];
  }

  function getJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" }).then(function (response) {
      if (response.ok) {
        return response.json();
      }
      return response.json().catch(function () {
        return {};
      }).then(function (body) {
        var detail = body && typeof body.detail === "string" ? ": " + body.detail : "";
        throw new Error(path + " answered HTTP " + response.status + detail);
      });
    });
  }

  // ------------------------------------------------------------ environments

  function renderEnvironments(environments) {
    var section = document.getElementById("environments");
    var grid = section.querySelector(".env-grid");
    if (!grid) {
      grid = el("div", { className: "env-grid" });
      section.appendChild(grid);
    }
    document.getElementById("environments-empty").hidden = environments.length > 0;
    grid.replaceChildren.apply(grid, environments.map(envCard));
  }

  function envCard(env) {
    var current = env.current || {};
    var last = env.last_round;
    var titleId = "env-" + String(env.name).replace(/[^A-Za-z0-9_-]/g, "_") + "-title";
    var badge;
    if (!last) {
      badge = el("span", { className: "badge badge-unknown" }, "no rounds yet");
    } else if (!last.up) {
      badge = el("span", { className: "badge badge-down" }, "down");
    } else if (!last.passed) {
      badge = el("span", { className: "badge badge-degraded" }, "degraded");
    } else {
      badge = el("span", { className: "badge badge-up" }, "up");
    }

    var card = el("article", { className: "env-card", "data-environment": env.name, "aria-labelledby": titleId }, [
      el("header", { className: "env-head" }, [
        el("h3", { id: titleId }, [el("span", { className: "env-dot", "aria-hidden": "true" }), env.name]),
        badge
      ]),
      env.url ? el("p", { className: "env-url muted" }, env.url) : null,
      el("dl", { className: "env-facts" }, [
        el("dt", null, "Version"),
        el("dd", null, [
          el("span", { className: "env-version" + (current.version ? "" : " no-data") }, current.version || "no data"),
          current.since ? el("span", { className: "env-since muted" }, [
            " since ", el("time", { datetime: current.since, title: formatDateTime(toMs(current.since)) }, formatWhen(toMs(current.since))),
            current.source ? " (" + (current.source === "event" ? "deployment event" : "probe") + ")" : null
          ]) : null
        ]),
        el("dt", null, "Last round"),
        el("dd", { className: "env-last-round" }, last ? lastRound(last) : el("span", { className: "no-data" }, "no data"))
      ]),
      weightsBlock(current.weights),
      windowsTable(env)
    ]);
    card.style.setProperty("--env-color", colorFor(env.name));
    return card;
  }

  function lastRound(last) {
    var parts = [];
    var rate = formatPct(typeof last.success_rate === "number" && last.success_rate <= 1 ? last.success_rate * 100 : last.success_rate);
    parts.push(el("span", { className: last.passed ? "ok" : "bad" }, last.passed ? "passed" : "failed"));
    if (rate) {
      parts.push(" · " + rate);
    }
    if (typeof last.duration_ms === "number") {
      parts.push(" · " + formatMs(last.duration_ms));
    }
    if (last.at) {
      parts.push(" · ", el("time", { datetime: last.at, title: formatDateTime(toMs(last.at)) }, formatWhen(toMs(last.at))));
    }
    if (last.msg && !last.passed) {
      parts.push(el("span", { className: "round-msg", title: last.msg }, last.msg));
    }
    return parts;
  }

  function weightsBlock(rawWeights) {
    var weights = asWeights(rawWeights);
    var block = el("div", { className: "weights" }, el("h4", null, "Traffic weights"));
    if (!weights.length) {
      block.appendChild(el("p", { className: "no-data" }, "no data"));
      return block;
    }
    var list = el("ul", { className: "weight-list" });
    weights.forEach(function (item) {
      var fill = el("span", { className: "weight-fill" });
      fill.style.width = item.pct + "%";
      list.appendChild(el("li", { className: "weight", "data-version": item.version, "data-weight": item.pct }, [
        el("span", { className: "weight-version" }, item.version),
        el("span", {
          className: "weight-track", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": item.pct,
          "aria-label": "Share of traffic on " + item.version
        }, fill),
        el("span", { className: "weight-pct" }, item.pct + " %")
      ]));
    });
    block.appendChild(list);
    return block;
  }

  function windowsTable(env) {
    var windows = env.windows || {};
    var body = el("tbody");
    WINDOWS.forEach(function (name) {
      var w = windows[name] || {};
      body.appendChild(el("tr", { "data-window": name }, [
        el("th", { scope: "row" }, name),
        pctCell(w.uptime_pct, "uptime"),
        pctCell(w.success_rate_pct, "success"),
        el("td", { className: "num count rounds" }, String(w.rounds || 0)),
        el("td", { className: "num count checks" }, String(w.checks || 0))
      ]));
    });
    return el("table", { className: "data-table windows-table" }, [
      el("caption", null, "Availability"),
      el("thead", null, el("tr", null, [
        el("th", { scope: "col" }, "Window"),
        el("th", { scope: "col", className: "num" }, "Uptime"),
        el("th", { scope: "col", className: "num" }, "Success"),
        el("th", { scope: "col", className: "num", title: "probe rounds" }, "Rounds"),
        el("th", { scope: "col", className: "num", title: "individual probe checks" }, "Checks")
      ])),
      body
    ]);
  }

  function pctCell(value, kind) {
    var text = formatPct(value);
    if (text === null) {
      return el("td", { className: "num " + kind }, el("span", { className: "no-data" }, "no data"));
    }
    var level = value >= 99.9 ? "ok" : value >= 99 ? "warn" : "bad";
    return el("td", { className: "num " + kind + " " + level }, text);
  }

  // ------------------------------------------------------------------ chart

  function isFailed(raw) {
    return raw && (!raw.passed || !raw.up);
  }

  function pointOption(failed, down, normal) {
    return function (ctx) {
      var raw = ctx.raw;
      if (raw && !raw.up) {
        return down;
      }
      return isFailed(raw) ? failed : normal;
    };
  }

  var markerPlugin = {
    id: "leanvibeMarkers",
    afterUpdate: function (chart) {
      positionMarkers(chart);
    },
    resize: function (chart) {
      window.requestAnimationFrame(function () {
        positionMarkers(chart);
      });
    }
  };

  function windowRange(latencies, windowName) {
    var start = null;
    var end = null;
    latencies.forEach(function (lat) {
      var s = toMs(lat.start);
      var e = toMs(lat.end);
      if (s !== null && (start === null || s < start)) {
        start = s;
      }
      if (e !== null && (end === null || e > end)) {
        end = e;
      }
    });
    if (start === null || end === null || end <= start) {
      end = Date.now();
      var match = /^(\d+)([hd])$/.exec(windowName);
      start = end - (match ? Number(match[1]) * (match[2] === "h" ? HOUR : DAY) : DAY);
    }
    // A young environment fills only the end of the window: start the axis a little before its first point
    // or marker, so that a few minutes of data are not squeezed against the right edge.
    var first = null;
    latencies.forEach(function (lat) {
      (lat.points || []).concat(lat.markers || []).forEach(function (item) {
        if (typeof item.t === "number" && (first === null || item.t < first)) {
          first = item.t;
        }
      });
    });
    if (first !== null && first > start && first < end) {
      start = Math.max(start, first - Math.max(60 * 1000, (end - first) * 0.05));
    }
    return { start: start, end: end };
  }

  function buildDatasets(latencies) {
    return latencies.map(function (lat) {
      var color = colorFor(lat.environment);
      var points = (lat.points || []).map(function (p) {
        var hasMs = typeof p.ms === "number" && isFinite(p.ms);
        return { x: Number(p.t), y: hasMs ? p.ms : 0, ms: hasMs ? p.ms : null, up: !!p.up, passed: !!p.passed };
      }).filter(function (p) {
        return isFinite(p.x);
      }).sort(function (a, b) {
        return a.x - b.x;
      });
      return {
        label: lat.environment,
        data: points,
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        tension: 0,  // straight lines: a smoothed curve would draw latencies no probe measured
        pointStyle: pointOption("crossRot", "rectRot", "circle"),
        pointRadius: pointOption(7, 6, points.length > 200 ? 0 : 2.5),
        pointHoverRadius: pointOption(9, 8, 5),
        pointBorderWidth: pointOption(3, 1, 1),
        pointBorderColor: pointOption(FAILED_COLOR, DOWN_COLOR, color),
        pointBackgroundColor: pointOption(FAILED_COLOR, DOWN_COLOR, color)
      };
    });
  }

  function renderChart(latencies, windowName) {
    var container = document.getElementById("chart-container");
    var range = windowRange(latencies, windowName);
    var step = tickStep(range.end - range.start);
    var datasets = buildDatasets(latencies);
    var total = datasets.reduce(function (sum, ds) {
      return sum + ds.data.length;
    }, 0);

    if (!state.chart) {
      state.chart = new window.Chart(document.getElementById("latency-chart"), {
        type: "line",
        data: { datasets: datasets },
        plugins: [markerPlugin],
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          normalized: true,
          interaction: { mode: "nearest", intersect: false },
          layout: { padding: { top: 26 } },
          scales: {
            x: {
              type: "linear",
              min: range.start,
              max: range.end,
              afterBuildTicks: function (axis) {
                axis.ticks = alignedTicks(axis.min, axis.max, axis.options.ticks.stepSize);
              },
              ticks: {
                stepSize: step,
                includeBounds: false,
                maxRotation: 0,
                autoSkipPadding: 12,
                callback: function (value) {
                  return formatTick(value, this.options.ticks.stepSize);
                }
              },
              grid: { color: "rgba(0,0,0,0.06)" }
            },
            y: {
              beginAtZero: true,
              title: { display: true, text: "response time (ms)" },
              grid: { color: "rgba(0,0,0,0.06)" }
            }
          },
          plugins: {
            legend: { position: "bottom", labels: { boxWidth: 18, boxHeight: 3 } },
            tooltip: {
              callbacks: {
                title: function (items) {
                  return items.length ? formatDateTime(items[0].parsed.x) : "";
                },
                label: function (item) {
                  var raw = item.raw || {};
                  var outcome = !raw.up ? "down" : raw.passed ? "passed" : "failed";
                  return item.dataset.label + ": " + formatMs(raw.ms) + " (" + outcome + ")";
                }
              }
            }
          }
        }
      });
    } else {
      var chart = state.chart;
      chart.data.datasets = datasets;
      chart.options.scales.x.min = range.start;
      chart.options.scales.x.max = range.end;
      chart.options.scales.x.ticks.stepSize = step;
    }
    // Marker elements first: the update below positions them.
    renderMarkers(latencies);
    state.chart.update("none");
    positionMarkers(state.chart);

    container.setAttribute("data-points", String(total));
    container.setAttribute("data-markers", String(state.markers.length));
    container.setAttribute("data-window", windowName);
    renderChartSummary(datasets, windowName);
  }

  function renderChartSummary(datasets, windowName) {
    var summary = document.getElementById("chart-summary");
    if (!datasets.length || datasets.every(function (ds) { return !ds.data.length; })) {
      summary.textContent = "No probe rounds in the last " + windowName + " yet.";
      return;
    }
    summary.textContent = datasets.map(function (ds) {
      var failed = ds.data.filter(isFailed).length;
      var values = ds.data.filter(function (p) { return p.ms !== null; }).map(function (p) { return p.ms; }).sort(function (a, b) { return a - b; });
      var median = values.length ? values[Math.floor(values.length / 2)] : null;
      return ds.label + ": " + ds.data.length + " rounds, " + failed + " failed, median " + formatMs(median);
    }).join(" · ") + " (last " + windowName + ").";
  }

  function renderMarkers(latencies) {
    var layer = document.getElementById("chart-markers");
    var markers = [];
    latencies.forEach(function (lat) {
      (lat.markers || []).forEach(function (m) {
        var t = Number(m.t);
        if (isFinite(t)) {
          markers.push({ data: m, t: t, environment: lat.environment });
        }
      });
    });
    markers.sort(function (a, b) {
      return a.t - b.t;
    });
    state.markers = markers.map(function (marker) {
      var m = marker.data;
      var event = String(m.event || "event");
      var reasons = asList(m.reasons);
      var heading = (EVENT_OUTCOME[event] || event) + " " + versionChange(m) +
        " in " + marker.environment + " at " + formatDateTime(marker.t);
      var weights = asWeights(m.weights);
      if (weights.length) {
        heading += "\nweights: " + weights.map(function (w) { return w.version + " " + w.pct + " %"; }).join(", ");
      }
      var detail = reasons.length ? reasons.join("\n") : (m.text ? String(m.text) : "");
      var label = detail ? heading + "\n" + detail : heading;
      var node = el("div", {
        className: "chart-marker marker-" + (EVENT_FLAG[event] ? event : "other"),
        "data-event": event,
        "data-version": m.version || "",
        "data-environment": marker.environment,
        "data-t": marker.t,
        title: label,
        role: "img",
        "aria-label": label,
        tabindex: 0
      }, el("span", { className: "chart-marker-flag", "aria-hidden": "true" }, EVENT_FLAG[event] || "?"));
      node.style.setProperty("--env-color", colorFor(marker.environment));
      return { node: node, t: marker.t };
    });
    layer.replaceChildren.apply(layer, state.markers.map(function (item) { return item.node; }));
  }

  function positionMarkers(chart) {
    if (!chart || !chart.scales || !chart.scales.x || !chart.chartArea) {
      return;
    }
    var canvas = chart.canvas;
    var area = chart.chartArea;
    var xScale = chart.scales.x;
    var offsetLeft = canvas.offsetLeft;
    var offsetTop = canvas.offsetTop;
    var lastX = [];
    state.markers.forEach(function (item) {
      var x = xScale.getPixelForValue(item.t);
      var visible = isFinite(x) && x >= area.left - 1 && x <= area.right + 1;
      item.node.hidden = !visible;
      if (!visible) {
        return;
      }
      // Events seconds apart share a pixel on a 24 h axis: stack their flags instead of drawing them on top of each other.
      var level = 0;
      while (lastX[level] !== undefined && x - lastX[level] < 20) {
        level++;
      }
      lastX[level] = x;
      item.node.style.left = (offsetLeft + x) + "px";
      item.node.style.top = (offsetTop + area.top) + "px";
      item.node.style.height = Math.max(0, area.bottom - area.top) + "px";
      item.node.style.setProperty("--flag-level", String(level));
    });
  }

  // ------------------------------------------------------------ deployments

  function renderDeployments(rows) {
    var body = document.querySelector("#deployments tbody");
    if (!rows.length) {
      body.replaceChildren(el("tr", { className: "empty-row" }, el("td", { colspan: 5, className: "no-data" }, "No deployment events yet.")));
      return;
    }
    body.replaceChildren.apply(body, rows.map(function (row) {
      var event = String(row.event || "");
      var at = toMs(row.at) !== null ? toMs(row.at) : toMs(row.timestamp) !== null ? toMs(row.timestamp) : typeof row.ts === "number" ? row.ts * 1000 : null;
      var reasons = asList(row.reasons);
      var weights = asWeights(row.weights);
      var reasonCell;
      if (reasons.length) {
        reasonCell = el("ul", { className: "reasons" }, reasons.map(function (reason) { return el("li", null, reason); }));
      } else if (row.text) {
        reasonCell = el("span", { className: "muted" }, String(row.text));
      } else {
        reasonCell = el("span", { className: "muted" }, "–");
      }
      return el("tr", { "data-event": event, "data-environment": row.environment || "", "data-version": row.version || "" }, [
        el("td", { className: "nowrap" }, at === null ? "–" : el("time", { datetime: new Date(at).toISOString() }, formatDateTime(at))),
        el("td", null, row.environment || "–"),
        el("td", null, el("span", { className: "event-badge event-" + (EVENT_FLAG[event] ? event : "other"), title: "event: " + event },
          (typeof row.outcome === "string" && row.outcome) || EVENT_OUTCOME[event] || event || "–")),
        el("td", { className: "version-cell" }, [
          el("span", { className: "version-change" }, versionChange(row)),
          weights.length ? el("span", { className: "muted weights-inline" }, weights.map(function (w) { return w.version + " " + w.pct + " %"; }).join(", ")) : null,
          row.app ? el("span", { className: "muted app-name" }, row.app) : null
        ]),
        el("td", { className: "reasons-cell" }, reasonCell)
      ]);
    }));
  }

  // ---------------------------------------------------------------- refresh

  function showError(message) {
    var banner = document.getElementById("error");
    if (message) {
      banner.textContent = message;
      banner.hidden = false;
      document.body.setAttribute("data-error", message);
    } else {
      banner.textContent = "";
      banner.hidden = true;
      document.body.removeAttribute("data-error");
    }
  }

  function refresh() {
    if (state.inFlight) {
      state.again = true;
      return Promise.resolve();
    }
    if (typeof window.Chart !== "function") {
      showError("The chart library (static/vendor/chart.umd.min.js) did not load.");
      return Promise.resolve();
    }
    state.inFlight = true;
    var windowName = state.window;
    var status = document.getElementById("status");
    return getJSON("api/overview").then(function (overview) {
      var environments = (overview && overview.environments) || [];
      environments.forEach(function (env) { colorFor(env.name); });
      return Promise.all([
        Promise.all(environments.map(function (env) {
          return getJSON("api/latency?environment=" + encodeURIComponent(env.name) + "&window=" + encodeURIComponent(windowName) +
            "&max_points=" + MAX_POINTS);
        })),
        getJSON("api/deployments?limit=" + DEPLOYMENT_LIMIT)
      ]).then(function (results) {
        renderEnvironments(environments);
        renderChart(results[0], windowName);
        renderDeployments((results[1] && results[1].deployments) || []);
        showError(null);
        status.textContent = "Updated " + formatDateTime(Date.now()) + (windowName === state.window ? "" : " (changing window…)");
        if (!state.rendered) {
          state.rendered = true;
          document.body.dataset.ready = "true";
        }
      });
    }).catch(function (err) {
      showError("Could not refresh the dashboard: " + (err && err.message ? err.message : String(err)));
      status.textContent = "Refresh failed at " + formatDateTime(Date.now()) + "; retrying every " + REFRESH_MS / 1000 + " s.";
    }).then(function () {
      state.inFlight = false;
      if (state.again || windowName !== state.window) {
        state.again = false;
        return refresh();
      }
      return null;
    });
  }

  function init() {
    // ?window=1h (any <n>h / <n>d the API accepts) picks another window than the three buttons offer.
    var requested = new URLSearchParams(window.location.search).get("window");
    if (requested && /^[0-9]{1,4}[hd]$/.test(requested)) {
      state.window = requested;
    }
    document.querySelectorAll('input[name="window"]').forEach(function (input) {
      input.checked = input.value === state.window;
      input.addEventListener("change", function () {
        if (input.checked) {
          state.window = input.value;
          refresh();
        }
      });
    });
    window.addEventListener("resize", function () {
      positionMarkers(state.chart);
    });
    refresh();
    window.setInterval(refresh, REFRESH_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
