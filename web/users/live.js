// The operators' live view (master tenant administrators): the last minutes of load as small charts, and the
// rooms as they are now, polled from GET /api/calld/1.0/live (the same numbers as /metrics).

import { h, replace } from "/shared/dom.js";

const POLL_MS = 5000;

const CHARTS = [
  { key: "cpu_percent", title: "CPU", unit: (v) => `${v.toFixed(0)} % of a core`, max: (values) => Math.max(100, ...values) },
  { key: "loop_lag_seconds", title: "Event loop lag", unit: (v) => `${(v * 1000).toFixed(0)} ms`, max: (values) => Math.max(0.05, ...values) },
  { key: "participants", title: "Participants", unit: (v) => String(v), max: (values) => Math.max(4, ...values) },
  { key: "memory_bytes", title: "Memory", unit: (v) => `${(v / 1048576).toFixed(0)} MiB`, max: (values) => Math.max(...values) * 1.2 },
];

/** A sparkline: the history of one number as an SVG polyline, with its latest value. */
function chart({ title, unit, max }, values, key) {
  const width = 280;
  const height = 64;
  const top = max(values) || 1;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * (height - 4) - 2).toFixed(1)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title} over the last minutes`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(line);
  const latest = values.length ? values[values.length - 1] : 0;
  return h(
    "section.card.chart",
    { dataset: { chart: key } },
    h("div.row", {}, h("h2", {}, title), h("strong.chart-value", {}, unit(latest))),
    svg,
  );
}

function roomsTable(rooms) {
  if (!rooms.length) return h("p.muted", { id: "live-no-rooms" }, "No meeting in progress.");
  return h(
    "div.stack",
    { id: "live-rooms" },
    rooms.map((room) =>
      h(
        "section.card",
        { dataset: { meeting: room.meeting_uuid } },
        h("h2", {}, `${room.name || `Meeting ${room.meeting_uuid.slice(0, 8)}`} · ${room.participants.length} in it`),
        h(
          "table.live-table",
          {},
          h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Kind"), h("th", {}, "State"), h("th", {}, "SIP Call-ID"))),
          h(
            "tbody",
            {},
            room.participants.map((p) =>
              h(
                "tr",
                {},
                h("td", {}, p.caller_id_name || p.caller_id_number || p.id),
                h("td", {}, p.kind),
                h("td", {}, [p.talking ? "talking" : "", p.muted ? "muted" : ""].filter(Boolean).join(", ") || "—"),
                h("td.mono", {}, p.call_id),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

function span(seconds) {
  return seconds < 90 ? `${Math.round(seconds)} seconds` : `${Math.round(seconds / 60)} minutes`;
}

/** Draw the live view into `main` and keep it fresh until the returned stop() is called. */
export function renderLive(main, api) {
  let timer = null;
  let stopped = false;
  async function refresh() {
    let live;
    try {
      live = await api.get("/api/calld/1.0/live");
    } catch (error) {
      const text = error.status === 403 ? "Only administrators of the master tenant see the live view." : error.message;
      replace(main, h("div.alert.error", { role: "alert", id: "live-error" }, text));
      return;
    }
    if (stopped) return;
    const history = live.history || [];
    replace(
      main,
      h("h1", {}, "Live"),
      h("p.muted", {}, `The last ${span(history.length * live.interval)}, a point every ${live.interval} s.`),
      h("div.charts", { id: "live-charts" }, CHARTS.map((c) => chart(c, history.map((s) => Number(s[c.key]) || 0), c.key))),
      roomsTable(live.rooms || []),
    );
  }
  refresh().finally(() => {
    if (!stopped) timer = setInterval(refresh, POLL_MS);
  });
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
