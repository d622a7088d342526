// The operators' live view (master tenant administrators): the last minutes of load as small charts, and the
// rooms as they are now with each participant's call quality, polled from GET /api/calld/1.0/live (the same
// numbers as /metrics and the calld participants API).

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

/** A loss fraction (0..1) as a percentage; the worse of audio and video; "—" before any figure. */
function loss(...fractions) {
  const known = fractions.filter((f) => f !== null && f !== undefined);
  return known.length ? `${(Math.max(...known) * 100).toFixed(1)} %` : "—";
}

function kbps(bitrate) {
  return String(Math.round((bitrate || 0) / 1000));
}

/** The call-quality cells of one participant (the same figures as the calld participants API). */
function qualityCells(q) {
  if (!q) return ["rtt", "loss", "sends", "receives"].map((key) => h("td.muted", { dataset: { quality: key } }, "—"));
  const { audio, video } = q;
  const rtt = q.round_trip_time === null ? "—" : `${(q.round_trip_time * 1000).toFixed(1)} ms`;
  const shown = video.out.layers.map((layer) => layer.resolution).filter(Boolean);
  return [
    h("td", { dataset: { quality: "rtt" }, title: "Round trip, from his receiver reports" }, rtt),
    h(
      "td",
      { dataset: { quality: "loss" }, title: "Packets lost on the way to us (in) and to him (out), last interval" },
      `in ${loss(audio.in.fraction_lost, video.in.fraction_lost)} · out ${loss(audio.out.fraction_lost, video.out.fraction_lost)}`,
    ),
    h(
      "td",
      { dataset: { quality: "sends" }, title: "What he sends: audio / video kbit/s" },
      `${kbps(audio.in.bitrate)} / ${kbps(video.in.bitrate)} kbit/s`,
      video.in.resolution ? h("div.muted", {}, video.in.resolution) : null,
    ),
    h(
      "td",
      { dataset: { quality: "receives" }, title: "What he receives: audio / video kbit/s" },
      `${kbps(audio.out.bitrate)} / ${kbps(video.out.bitrate)} kbit/s`,
      shown.length ? h("div.muted", {}, shown.join(", ")) : null,
    ),
  ];
}

function roomsTable(rooms) {
  if (!rooms.length) return h("p.muted", { id: "live-no-rooms" }, "No meeting in progress.");
  const headings = ["Name", "Kind", "State", "Round trip", "Loss", "Sends (a / v)", "Receives (a / v)", "SIP Call-ID"];
  return h(
    "div.stack",
    { id: "live-rooms" },
    rooms.map((room) =>
      h(
        "section.card",
        { dataset: { meeting: room.meeting_uuid } },
        h("h2", {}, `${room.name || `Meeting ${room.meeting_uuid.slice(0, 8)}`} · ${room.participants.length} in it`),
        h(
          "div.table-scroll",
          {},
          h(
            "table.live-table",
            {},
            h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
            h(
              "tbody",
              {},
              room.participants.map((p) =>
                h(
                  "tr",
                  { dataset: { participant: p.id } },
                  h("td", {}, p.caller_id_name || p.caller_id_number || p.id),
                  h("td", {}, p.kind),
                  h("td", {}, [p.talking ? "talking" : "", p.muted ? "muted" : ""].filter(Boolean).join(", ") || "—"),
                  qualityCells(p.call_quality),
                  h("td.mono", {}, p.call_id),
                ),
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
