// drive.mjs drives the verify page in Debian's chromium through
// playwright-core, as a person would: pick the files, press Verify, read
// #result. Usage: node drive.mjs CONFIG.json; prints one JSON object.
// Every wait is bounded; the Go test bounds the whole process too.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const T = 20000; // ms, any single wait
const out = { cases: [], timing: {} };

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
  timeout: T,
});
try {
  // Loads the page, checks it is ready, returns the load time (ms from
  // navigation start until the verifier answered that it was loaded).
  async function open(page, url) {
    await page.goto(url, { timeout: T });
    await page.waitForSelector("body[data-ready=true]", { timeout: T });
    return page.evaluate(() => performance.now());
  }
  // One case: pick the files, type the publication string, press
  // Verify, wait for the verdict, screenshot it.
  async function check(page, c) {
    await page.setInputFiles("#document", c.document);
    await page.setInputFiles("#signature", c.signature);
    await page.fill("#pubstr", c.pubstr || "");
    await page.evaluate(() => { const r = document.getElementById("result"); r.dataset.status = ""; r.textContent = ""; });
    await page.click("#verify");
    await page.waitForFunction(() => document.getElementById("result").dataset.status !== "", null, { timeout: c.timeout || T });
    const text = await page.textContent("#result");
    const shot = join(cfg.outDir, c.name + ".png");
    await page.screenshot({ path: shot, fullPage: true });
    out.cases.push({ name: c.name, text, screenshot: shot });
  }
  const file = (path, mutate) => {
    const buffer = readFileSync(path);
    if (mutate === "flip") buffer[Math.floor(buffer.length / 2)] ^= 1;
    if (mutate === "append") return { name: path.split("/").pop(), mimeType: "application/octet-stream", buffer: Buffer.concat([buffer, Buffer.from("!")]) };
    return { name: path.split("/").pop(), mimeType: "application/octet-stream", buffer };
  };

  // The node's page, trusting the node's publications file.
  {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const loads = [];
    for (let i = 0; i < cfg.loads; i++) loads.push(await open(page, cfg.nodeURL));
    out.timing.nodeLoadMs = loads;
    for (const c of cfg.nodeCases) {
      // A large document is given by its path, as a person picks it: the
      // page reads it from disk in slices.
      const document = c.byPath ? c.document : file(c.document, c.docMutate);
      await check(page, { name: c.name, document, signature: file(c.signature, c.sigMutate), pubstr: c.pubstr, timeout: c.byPath ? 4 * T : T });
    }
    // Both files dropped together on the document zone, as from a file
    // manager: the page must sort out which is the signature.
    {
      const d = cfg.drop;
      const dt = await page.evaluateHandle(({ doc, sig, docName, sigName }) => {
        const t = new DataTransfer();
        t.items.add(new File([new Uint8Array(sig)], sigName));
        t.items.add(new File([new Uint8Array(doc)], docName));
        return t;
      }, { doc: [...readFileSync(d.document)], sig: [...readFileSync(d.signature)], docName: d.document.split("/").pop(), sigName: d.signature.split("/").pop() });
      await page.dispatchEvent("#document-drop", "drop", { dataTransfer: dt });
      await page.fill("#pubstr", "");
      await page.evaluate(() => { const r = document.getElementById("result"); r.dataset.status = ""; r.textContent = ""; });
      await page.click("#verify");
      await page.waitForFunction(() => document.getElementById("result").dataset.status !== "", null, { timeout: T });
      const shot = join(cfg.outDir, d.name + ".png");
      await page.screenshot({ path: shot, fullPage: true });
      out.cases.push({ name: d.name, text: await page.textContent("#result"), screenshot: shot });
    }
    // The keyboard alone, as a person who cannot use a mouse, on a
    // freshly loaded page: Tab to each control in order, Space opens the
    // file chooser, Enter presses Verify.
    {
      const k = cfg.keyboard;
      const focused = () => page.evaluate(() => document.activeElement && document.activeElement.id);
      const order = [];
      await open(page, cfg.nodeURL);
      const pick = async (path) => {
        const [chooser] = await Promise.all([page.waitForEvent("filechooser", { timeout: T }), page.keyboard.press("Space")]);
        await chooser.setFiles(path);
      };
      await page.keyboard.press("Tab");
      order.push(await focused());
      await pick(k.document);
      await page.keyboard.press("Tab");
      order.push(await focused());
      await pick(k.signature);
      await page.keyboard.press("Tab");
      order.push(await focused());
      await page.keyboard.type(k.pubstr);
      await page.keyboard.press("Tab");
      order.push(await focused());
      await page.keyboard.press("Tab");
      order.push(await focused());
      await page.evaluate(() => { const r = document.getElementById("result"); r.dataset.status = ""; r.textContent = ""; });
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => document.getElementById("result").dataset.status !== "", null, { timeout: T });
      const shot = join(cfg.outDir, k.name + ".png");
      await page.screenshot({ path: shot, fullPage: true });
      out.cases.push({ name: k.name, text: await page.textContent("#result"), screenshot: shot });
      out.keyboardOrder = order;
    }
    await ctx.close();
  }

  // The file from tempel verify-page, opened from disk with the network
  // off: any request that is not for the file itself is aborted and
  // recorded. The browser is in Tallinn's time zone, as a citizen's
  // would be: the page must show the signing time in it, beside UTC.
  {
    const ctx = await browser.newContext({ timezoneId: "Europe/Tallinn", locale: "en-GB" });
    await ctx.setOffline(true);
    const requests = [];
    await ctx.route("**/*", (route) => {
      const u = route.request().url();
      if (u.startsWith("file:")) return route.continue();
      requests.push(u);
      return route.abort();
    });
    const page = await ctx.newPage();
    page.on("request", (r) => { if (!r.url().startsWith("file:")) requests.push(r.url()); });
    const loads = [];
    for (let i = 0; i < cfg.loads; i++) loads.push(await open(page, cfg.fileURL));
    out.timing.fileLoadMs = loads;
    for (const c of cfg.fileCases) {
      await check(page, { name: c.name, document: file(c.document, c.docMutate), signature: file(c.signature, c.sigMutate), pubstr: c.pubstr });
    }
    // The verification alone, measured inside the page around the
    // WebAssembly call: each measure runs `runs` times, the median kept.
    out.timing.verify = [];
    for (const m of cfg.measures) {
      const input = {
        document: [...readFileSync(m.document)],
        signature: [...readFileSync(m.signature)],
        pubstr: m.pubstr || "",
        pubfile: m.pubfile ? [...readFileSync(m.pubfile)] : null,
        root: m.root ? readFileSync(m.root, "utf8") : "",
        constraints: m.constraints || [],
      };
      const r = await page.evaluate(({ input, runs }) => {
        const arg = Object.assign({}, input, {
          document: new Uint8Array(input.document),
          signature: new Uint8Array(input.signature),
          pubfile: input.pubfile ? new Uint8Array(input.pubfile) : null,
        });
        const ms = [];
        let status = "";
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          status = JSON.parse(globalThis.tempelVerify(arg)).status;
          ms.push(performance.now() - t0);
        }
        ms.sort((a, b) => a - b);
        return { status, median: ms[Math.floor(ms.length / 2)], min: ms[0], max: ms[ms.length - 1] };
      }, { input, runs: cfg.runs });
      out.timing.verify.push(Object.assign({ name: m.name }, r));
    }
    out.offlineRequests = requests;
    await ctx.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
