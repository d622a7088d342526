// Full-page messages (errors, waiting, ended) and the brand bar, shared by both apps.

import { h, icon, replace } from "./dom.js";

export function topbar({ right = [] } = {}) {
  return h(
    "header.topbar",
    {},
    h("a.brand", { href: "/" }, h("span.brand-mark", {}, icon("logo")), h("span", {}, "Meetings")),
    h("div.spacer"),
    right,
  );
}

/**
 * A centred message page. tone: "info" | "error" | "warn" | "ok" | "wait" (spinner).
 * actions: [{label, primary, danger, onClick, href, id}]
 */
export function showMessage(root, { tone = "info", iconName = "alert", title, text, actions = [], extra = null, id }) {
  document.body.classList.remove("in-meeting");
  const mark =
    tone === "wait"
      ? h("div.spinner", { role: "presentation" })
      : h(`div.message-icon.${tone}`, {}, icon(iconName));
  const buttons = actions.map((action) => {
    const classes = `btn${action.primary ? ".primary" : action.danger ? ".danger" : ".ghost"}`;
    return action.href
      ? h(`a.${classes}`, { href: action.href, id: action.id }, action.label)
      : h(`button.${classes}`, { type: "button", onclick: action.onClick, id: action.id }, action.label);
  });
  const card = h(
    "section.card.message-card",
    { "aria-live": "polite", "data-page": id || tone },
    mark,
    h("h1", { id: "page-title", tabindex: "-1" }, title),
    text ? h("p.muted", {}, text) : null,
    extra,
    buttons.length ? h("div.row", {}, buttons) : null,
  );
  replace(root, topbar(), h("main.message-page", {}, card));
  const heading = card.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
  return card;
}

/** The page shown when a call ends, by reason. Returns the card. */
export function endedPage(root, { reason, text, meetingName, rejoin, home }) {
  const pages = {
    deleted: {
      id: "ended",
      iconName: "door",
      tone: "info",
      title: "The meeting has ended",
      text: `${meetingName ? `“${meetingName}”` : "This meeting"} was closed by its organiser. Thank you for joining.`,
    },
    expired: {
      id: "ended",
      iconName: "hourglass",
      tone: "info",
      title: "The meeting has ended",
      text: `${meetingName ? `“${meetingName}”` : "This meeting"} reached the end of its lifetime and was closed.`,
    },
    kicked: {
      id: "removed",
      iconName: "ban",
      tone: "warn",
      title: "You were removed from the meeting",
      text: "The organiser removed you from this meeting.",
    },
    hangup: {
      id: "ended",
      iconName: "door",
      tone: "info",
      title: "The call has ended",
      text: text ? `The meeting server ended the call: ${text}.` : "The meeting server ended the call.",
    },
    left: {
      id: "left",
      iconName: "door",
      tone: "ok",
      title: "You left the meeting",
      text: meetingName ? `You can rejoin “${meetingName}” while it lasts.` : "",
    },
    lost: {
      id: "lost",
      iconName: "wifiOff",
      tone: "error",
      title: "Connection lost",
      text: "The connection to the meeting was interrupted. Check your network, then try again.",
    },
  };
  const page = pages[reason] || pages.hangup;
  const actions = [];
  if (rejoin && (reason === "left" || reason === "lost" || reason === "hangup")) {
    actions.push({ label: reason === "lost" ? "Reconnect" : "Rejoin", primary: true, onClick: rejoin, id: "rejoin" });
  }
  if (home) actions.push({ label: home.label, href: home.href, onClick: home.onClick, id: "home" });
  return showMessage(root, { ...page, actions });
}
