// Drives aimi's web console in headless Chromium (Debian's chromium, through playwright-core)
// and prints what it saw as one JSON line; tests/browser/test_console.py asserts on it.
//   CONSOLE_URL=http://127.0.0.1:8000 CONSOLE_KEY=... SHOTS=docs/console node console.mjs <scenario>
import { chromium } from "playwright-core";

const url = process.env.CONSOLE_URL;
const key = process.env.CONSOLE_KEY ?? "";
const shots = process.env.SHOTS ?? "";
const prefix = process.env.SHOT_PREFIX ?? "";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

async function shot(page, name) {
  if (shots) await page.screenshot({ path: `${shots}/${prefix}${name}.png`, fullPage: true });
}

async function signIn(page, secret = key) {
  await page.goto(url);
  await page.getByLabel("API key").fill(secret);
  await page.getByRole("button", { name: "Sign in" }).click();
}

// Records the assistant's text every time it changes, with the time, until the answer settles.
async function watchAnswer(page) {
  await page.evaluate(() => {
    window.__seen = [];
    const list = document.querySelector(".transcript");
    new MutationObserver(() => {
      const turns = list.querySelectorAll(".turn.assistant .content");
      const text = turns.length ? turns[turns.length - 1].textContent : "";
      const seen = window.__seen;
      if (!seen.length || seen[seen.length - 1].text !== text) seen.push({ text, at: performance.now() });
    }).observe(list, { subtree: true, childList: true, characterData: true });
  });
}

const stats = (page) =>
  page.$$eval(".stats dd", (items) => Object.fromEntries(items.map((d) => [d.dataset.stat, d.textContent])));

const scenarios = {
  async "wrong-key"(page) {
    await page.goto(url);
    await shot(page, "sign-in");
    await signIn(page, "not-a-key-of-this-server");
    const alert = page.getByRole("alert");
    await alert.filter({ hasText: "401" }).waitFor();
    return { alert: await alert.textContent(), stored: await page.evaluate(() => sessionStorage.length) };
  },

  async stream(page) {
    await signIn(page);
    await page.getByRole("heading", { name: "Playground" }).waitFor();
    await page.locator("select[name=deployment] option").first().waitFor({ state: "attached" });
    await page.getByLabel("System message").fill("You are a helpful assistant.");
    await page.getByLabel("Message", { exact: true }).fill("Say hello.");
    if (process.env.CONSOLE_MAX_TOKENS) await page.getByLabel("Max tokens").fill(process.env.CONSOLE_MAX_TOKENS);
    await watchAnswer(page);
    await page.getByRole("button", { name: "Send" }).click();
    const status = page.getByRole("status").first();
    await page.waitForFunction(() => /^(Done|Could not|.*\(\d{3} )/.test(document.querySelector(".chat .status").textContent), null, { timeout: 120000 });
    if (!(await status.textContent()).startsWith("Done")) throw new Error(`the answer failed: ${await status.textContent()}`);
    await page.getByRole("tab", { name: "Python (openai)" }).click();
    const samples = {};
    for (const tab of ["curl", "Python (azure-ai-inference)", "Python (openai)", "JavaScript (@azure-rest/ai-inference)"]) {
      await page.getByRole("tab", { name: tab }).click();
      samples[tab] = await page.locator(".code code").textContent();
    }
    await page.getByRole("tab", { name: "Python (openai)" }).click();
    await shot(page, "playground");
    await page.setViewportSize({ width: 360, height: 800 });
    await shot(page, "playground-360px");
    return {
      seen: await page.evaluate(() => window.__seen),
      stats: await stats(page),
      status: await page.getByRole("status").first().textContent(),
      samples,
      storage: await page.evaluate(() => ({ local: localStorage.length, session: Object.keys(sessionStorage), url: location.href })),
    };
  },

  async stop(page) {
    await signIn(page);
    await page.locator("select[name=deployment] option").first().waitFor({ state: "attached" });
    await page.getByLabel("Message", { exact: true }).fill("Tell me a long story.");
    await watchAnswer(page);
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByRole("status").filter({ hasText: "Streaming" }).waitFor();
    await page.getByRole("button", { name: "Stop" }).click();
    await page.getByRole("status").filter({ hasText: "Stopped" }).waitFor();
    const atStop = await page.locator(".turn.assistant .content").last().textContent();
    // Nothing more arrives once stopped: the text is the same a moment later.
    await page.waitForTimeout(1000);
    return {
      atStop,
      after: await page.locator(".turn.assistant .content").last().textContent(),
      status: await page.getByRole("status").first().textContent(),
      sendEnabled: await page.getByRole("button", { name: "Send" }).isEnabled(),
    };
  },

  async deployments(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Deployments" }).click();
    await page.locator("tr[data-deployment]").first().waitFor();
    const rows = await page.$$eval("tr[data-deployment]", (trs) =>
      trs.map((tr) => [...tr.querySelectorAll("th, td")].map((c) => c.textContent)),
    );
    // A runtime deployment: created, shown with its state, then deleted.
    page.on("dialog", (dialog) => dialog.accept());
    await page.getByLabel("Name").fill("extra-demo");
    await page.getByLabel(/^Fields/).fill(JSON.stringify({ model: process.env.CONSOLE_MODEL, engine: "fake" }));
    await page.getByRole("button", { name: "Create or change" }).click();
    await page.getByRole("status").filter({ hasText: "Created extra-demo." }).waitFor();
    const added = page.locator('tr[data-deployment="extra-demo"]');
    await added.filter({ hasText: "ready" }).waitFor();
    const addedRow = await added.locator("th, td").allTextContents();
    await shot(page, "deployments");
    await page.locator('li[data-managed="extra-demo"]').getByRole("button", { name: "Delete" }).click();
    await page.getByRole("status").filter({ hasText: "Deleted extra-demo." }).waitFor();
    await added.waitFor({ state: "detached" });
    return { rows, addedRow };
  },

  async keys(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Keys" }).click();
    await page.getByRole("heading", { name: "Keys" }).waitFor();
    await page.getByLabel("Name").fill("ci-reader");
    await page.getByRole("button", { name: "Create key" }).click();
    const shown = page.getByRole("status").filter({ hasText: "Created ci-reader." });
    await shown.waitFor();
    const secret = await page.getByLabel("Secret of ci-reader").textContent();
    const works = async () =>
      (await fetch(`${url}/v1/models`, { headers: { "api-key": secret } })).status;
    const before = await works();
    await page.locator('tr[data-key="ci-reader"]').waitFor();
    await shot(page, "keys");
    const listed = await page.locator('tr[data-key="ci-reader"] th, tr[data-key="ci-reader"] td').allTextContents();
    page.on("dialog", (dialog) => dialog.accept());
    await page.getByRole("button", { name: "Done, hide it" }).click();
    await page.locator('tr[data-key="ci-reader"]').getByRole("button", { name: "Revoke" }).click();
    await page.getByRole("status").filter({ hasText: "Revoked ci-reader." }).waitFor();
    await page.locator('tr[data-key="ci-reader"]').filter({ hasText: "revoked" }).waitFor();
    return {
      secretLength: secret.length,
      before,
      after: await works(),
      listed,
      secretStillShown: await page.locator(".secret").count(),
      storage: await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length })),
    };
  },

  async usage(page) {
    await signIn(page);
    await page.getByRole("link", { name: "Usage" }).click();
    await page.locator("figure rect.bar").first().waitFor();
    // Two scrapes of /metrics make the first live point.
    await page.locator(".live .metric-value").filter({ hasText: "req/s" }).waitFor({ timeout: 20000 });
    const charts = await page.$$eval("figure", (figures) =>
      figures
        .filter((f) => f.querySelector("rect.bar"))
        .map((f) => ({
          title: f.querySelector("figcaption").textContent,
          bars: [...f.querySelectorAll("rect.bar")].map((r) => [r.dataset.label, r.dataset.series, Number(r.dataset.value)]),
        })),
    );
    const table = await page.$$eval("table tbody tr", (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    const download = page.waitForEvent("download");
    await page.getByRole("button", { name: "Export CSV" }).click();
    const file = await download;
    const chunks = [];
    for await (const chunk of await file.createReadStream()) chunks.push(chunk);
    await shot(page, "usage");
    return { charts, table, csv: Buffer.concat(chunks).toString("utf8"), csvName: file.suggestedFilename() };
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const browser = await chromium.launch({ executablePath, headless: true, args: FLAGS });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const problems = [];
  page.on("console", (message) => {
    // A refused request (the wrong key's 401) is logged by Chromium too; it is not a fault of the page.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  const result = await scenarios[name](page);
  console.log(JSON.stringify({ ...result, problems }));
} finally {
  await browser.close();
}
