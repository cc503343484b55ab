// Keys (admin): the managed keys of /admin/keys; create one (its secret shown once, here only),
// rotate one (a new secret, shown once) and revoke one.

import { call, explain, json } from "../api";
import { clear, field, h } from "../dom";

interface ManagedKey {
  name: string;
  state: string;
  scopes: string[];
  deployments: string[] | null;
  created_at: string;
  expires_at: string | null;
  rotated_at: string | null;
  revoked_at: string | null;
  key?: string;
}

const when = (moment: string | null) => (moment ? moment.replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$|Z$/, " UTC") : "–");

export function keys(root: HTMLElement): () => void {
  const status = h("p", { class: "status", role: "status" });
  const secret = h("div", { class: "shown-once", "aria-live": "polite" });
  const body = h("tbody");
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}", autocomplete: "off" });
  const scopes = ["inference", "metrics", "admin"].map((scope) =>
    h("input", { type: "checkbox", name: "scope", value: scope, checked: scope === "inference" }),
  );
  const deployments = h("input", { name: "deployments", placeholder: "all", autocomplete: "off" });
  const hours = h("input", { type: "number", name: "expires_in_hours", min: 1, step: 1, placeholder: "never" });
  const create = h("button", { type: "submit", class: "primary" }, "Create key");

  const fail = (error: unknown) => {
    clear(status, explain(error));
    status.classList.add("error");
  };
  const showSecret = (key: ManagedKey, what: string) => {
    const value = h("output", { class: "secret", "aria-label": `Secret of ${key.name}` }, key.key ?? "");
    const copy = h("button", { type: "button" }, "Copy");
    copy.addEventListener("click", () => void navigator.clipboard?.writeText(key.key ?? "").then(() => clear(copy, "Copied")));
    clear(
      secret,
      h("h2", {}, `${what} ${key.name}`),
      h("p", {}, "This is the only time the secret is shown: aimi keeps only its digest. Copy it now."),
      value,
      h("div", { class: "buttons" }, copy, h("button", { type: "button", onclick: () => clear(secret) }, "Done, hide it")),
    );
  };

  const refresh = async () => {
    try {
      const listing = await json<{ data: ManagedKey[] }>("/admin/keys");
      clear(
        body,
        ...listing.data.map((k) => {
          const rotate = h("button", { type: "button", disabled: k.state !== "active" }, "Rotate");
          const revoke = h("button", { type: "button", class: "danger", disabled: k.state === "revoked" }, "Revoke");
          rotate.addEventListener("click", async () => {
            if (!confirm(`Rotate ${k.name}? The old secret keeps working for the grace period only.`)) return;
            try {
              showSecret(await json<ManagedKey>(`/admin/keys/${encodeURIComponent(k.name)}/rotate`, { method: "POST" }), "New secret of");
              await refresh();
            } catch (error) {
              fail(error);
            }
          });
          revoke.addEventListener("click", async () => {
            if (!confirm(`Revoke ${k.name}? Requests with it are refused from now on.`)) return;
            try {
              await call(`/admin/keys/${encodeURIComponent(k.name)}/revoke`, { method: "POST" });
              clear(status, `Revoked ${k.name}.`);
              status.classList.remove("error");
              await refresh();
            } catch (error) {
              fail(error);
            }
          });
          return h(
            "tr",
            { "data-key": k.name },
            h("th", { scope: "row" }, k.name),
            h("td", {}, h("span", { class: `state state-${k.state}` }, k.state)),
            h("td", {}, k.scopes.join(", ")),
            h("td", {}, k.deployments ? k.deployments.join(", ") : "all"),
            h("td", {}, when(k.created_at)),
            h("td", {}, when(k.expires_at)),
            h("td", { class: "buttons" }, rotate, revoke),
          );
        }),
      );
      if (!listing.data.length) clear(body, h("tr", {}, h("td", { colspan: 7 }, "No managed keys yet.")));
    } catch (error) {
      fail(error);
    }
  };

  const form = h(
    "form",
    { class: "create", "aria-label": "Create a key" },
    h("h2", {}, "Create a key"),
    h(
      "div",
      { class: "row" },
      field("Name", name, "Its id in logs and the ledger"),
      field("Deployments", deployments, "Comma-separated; empty: all"),
      field("Expires in hours", hours),
    ),
    h("fieldset", { class: "row checks" }, h("legend", {}, "Scopes"), ...scopes.map((box) => h("label", {}, box, ` ${box.value}`))),
    create,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const wanted: Record<string, unknown> = {
      name: name.value.trim(),
      scopes: scopes.filter((box) => box.checked).map((box) => box.value),
    };
    const only = deployments.value.split(",").map((d) => d.trim()).filter(Boolean);
    if (only.length) wanted.deployments = only;
    if (hours.value) wanted.expires_in_hours = Number(hours.value);
    create.disabled = true;
    try {
      const made = await json<ManagedKey>("/admin/keys", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(wanted),
      });
      showSecret(made, "Created");
      clear(status, `Created ${made.name}.`);
      status.classList.remove("error");
      form.reset();
      await refresh();
    } catch (error) {
      fail(error);
    } finally {
      create.disabled = false;
    }
  });

  clear(
    root,
    h("h1", {}, "Keys"),
    status,
    secret,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "table", "aria-label": "Managed keys" },
        h("thead", {}, h("tr", {}, ...["Name", "State", "Scopes", "Deployments", "Created", "Expires", ""].map((c) => h("th", { scope: "col" }, c)))),
        body,
      ),
    ),
    form,
  );
  void refresh();
  return () => {};
}
