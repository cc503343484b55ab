// The console: sign in with a key, then the pages. Hash routes (#/playground, ...) keep the
// server's route table to one page; the key never goes into the URL.

import "./style.css";
import { ApiFailure, call, explain, forgetKey, saveKey, savedKey } from "./api";
import { clear, field, h } from "./dom";
import { deployments } from "./pages/deployments";
import { keys } from "./pages/keys";
import { playground } from "./pages/playground";
import { usage } from "./pages/usage";

type Page = (root: HTMLElement) => () => void;

const PAGES: { id: string; label: string; page: Page }[] = [
  { id: "playground", label: "Playground", page: playground },
  { id: "deployments", label: "Deployments", page: deployments },
  { id: "usage", label: "Usage", page: usage },
  { id: "keys", label: "Keys", page: keys },
];

const app = document.getElementById("app") as HTMLElement;
let leave: () => void = () => {};

function signIn(message = ""): void {
  leave();
  leave = () => {};
  const key = h("input", { type: "password", name: "key", autocomplete: "off", required: true, spellcheck: "false" });
  const error = h("p", { class: "status error", role: "alert" }, message);
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "sign-in", "aria-label": "Sign in" },
    h("h1", {}, "aimi"),
    h("p", {}, "Sign in with an API key. ", h("code", {}, "aimi serve"), " printed one when it created it, and keeps it in its state directory (", h("code", {}, "api-key"), ")."),
    field("API key", key, "Kept in this browser tab only, until you sign out or close it."),
    submit,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clear(error, "Checking…");
    try {
      await call("/v1/models", {}, key.value.trim());
      saveKey(key.value.trim());
      route();
    } catch (failure) {
      clear(error, failure instanceof ApiFailure && failure.status === 401 ? "That key was not accepted: aimi answered 401 Unauthorized. Check it and try again." : explain(failure));
      submit.disabled = false;
      key.focus();
    }
  });
  clear(app, h("main", { class: "center" }, form));
  key.focus();
}

function route(): void {
  if (!savedKey()) {
    signIn();
    return;
  }
  leave();
  const id = location.hash.replace(/^#\/?/, "") || PAGES[0].id;
  const current = PAGES.find((p) => p.id === id) ?? PAGES[0];
  const main = h("main", { id: "main", tabindex: -1 });
  const signOut = h("button", { type: "button", class: "link" }, "Sign out");
  signOut.addEventListener("click", () => {
    forgetKey();
    signIn();
  });
  const nav = h(
    "nav",
    { "aria-label": "Console" },
    h("a", { class: "brand", href: "#/playground" }, "aimi"),
    h("ul", {}, ...PAGES.map((p) => h("li", {}, h("a", { href: `#/${p.id}`, "aria-current": p === current ? "page" : null }, p.label)))),
    signOut,
  );
  clear(app, h("a", { class: "skip", href: "#main" }, "Skip to content"), h("header", {}, nav), main);
  document.title = `${current.label} · aimi console`;
  leave = current.page(main);
}

window.addEventListener("hashchange", () => {
  if (location.hash !== "#main") route();
});
route();
