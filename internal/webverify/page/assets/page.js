"use strict";
// The page's own logic: read the chosen files, call tempelVerify (the
// Go verifier compiled to WebAssembly) and show its answer. No
// verification happens here.
(() => {
  const $ = (id) => document.getElementById(id);
  const cfg = JSON.parse($("config").textContent);
  const picked = { document: null, signature: null, pubfile: null };
  const result = $("result");

  function show(status, reason, fields) {
    result.dataset.status = status;
    result.textContent = "";
    const v = document.createElement("div");
    v.className = "verdict";
    v.textContent = status + ": " + reason;
    result.appendChild(v);
    const dl = document.createElement("dl");
    for (const [k, val] of fields || []) {
      if (!val) continue;
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = val;
      dl.append(dt, dd);
    }
    if (dl.childElementCount) result.appendChild(dl);
  }

  function choose(which, file) {
    picked[which] = file;
    const n = $(which + "-name");
    if (n) n.textContent = file ? file.name + " (" + file.size + " bytes)" : "none chosen";
  }

  for (const which of ["document", "signature", "pubfile"]) {
    $(which).addEventListener("change", (e) => choose(which, e.target.files[0] || null));
  }
  for (const which of ["document", "signature"]) {
    const zone = $(which + "-drop");
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      const files = [...e.dataTransfer.files];
      // Two files dropped on either zone: the signature is the one named so.
      if (files.length === 2) {
        const isSig = (f) => /\.(ksig|tsr|tst)$/i.test(f.name);
        const sig = files.find(isSig) || files[1];
        choose("signature", sig);
        choose("document", files.find((f) => f !== sig));
      } else if (files.length === 1) {
        choose(which, files[0]);
      }
    });
  }

  const tooBig = (f, max) => f.size > max;
  const bytes = async (f) => new Uint8Array(await f.arrayBuffer());

  async function trust() {
    const pubstr = $("pubstr").value.trim();
    if (pubstr) return { pubstr };
    if (picked.pubfile) {
      if (tooBig(picked.pubfile, cfg.maxPubfile)) throw new Error("the publications file is too large");
      return { pubfile: await bytes(picked.pubfile), pubfileSource: "the publications file " + picked.pubfile.name };
    }
    if (cfg.pubfileURL) {
      const resp = await fetch(cfg.pubfileURL, { cache: "no-cache", credentials: "omit" });
      if (!resp.ok) throw new Error("this service's publications file could not be fetched (HTTP " + resp.status + ")");
      const b = new Uint8Array(await resp.arrayBuffer());
      return { pubfile: b, pubfileSource: "this service's publications file (" + new URL(cfg.pubfileURL, location.href).href + ")" };
    }
    return {};
  }

  // A document is hashed a slice at a time, by the Go verifier, so that
  // a large one never sits whole in memory; the piece size is within
  // the verifier's bound on one piece.
  const PIECE = 4 << 20;
  const MiB = 1024 * 1024;

  // hashDocument streams the document into the verifier's hasher for
  // this signature. It returns null when the document is hashed, or the
  // verifier's answer when the signature decides the case without it.
  async function hashDocument(f, signature) {
    const refused = globalThis.tempelHashStart(signature);
    if (refused) return JSON.parse(refused);
    let last = performance.now();
    for (let off = 0; off < f.size; off += PIECE) {
      const piece = new Uint8Array(await f.slice(off, off + PIECE).arrayBuffer());
      const n = globalThis.tempelHashWrite(piece);
      if (typeof n !== "number" || n !== Math.min(off + PIECE, f.size)) {
        throw new Error("the document could not be read whole");
      }
      if (performance.now() - last > 250) {
        last = performance.now();
        result.dataset.status = "";
        result.textContent = "Reading the document… " + Math.floor(100 * n / f.size) + "% of " + Math.ceil(f.size / MiB) + " MiB";
      }
    }
    return null;
  }

  // signedAt shows the signing time in the person's own time zone, with
  // the UTC time the signature records beside it.
  function signedAt(iso) {
    if (!iso) return "";
    const utc = iso.replace("T", " ").replace("Z", " UTC");
    const d = new Date(iso);
    if (isNaN(d)) return utc;
    let local;
    try {
      local = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" }).format(d);
    } catch (e) {
      return utc;
    }
    return local + " (" + utc + ")";
  }

  async function verify() {
    if (!picked.document || !picked.signature) {
      show("INCONCLUSIVE", "choose both the document and its signature first");
      return;
    }
    if (tooBig(picked.document, cfg.maxDocument)) {
      show("INCONCLUSIVE", "the document is too large for this page (" + Math.floor(cfg.maxDocument / MiB) + " MiB at most): use tempel verify");
      return;
    }
    if (tooBig(picked.signature, cfg.maxSignature)) {
      show("FAILED", "the signature file is too large to be a signature");
      return;
    }
    $("verify").disabled = true;
    try {
      let t;
      try {
        t = await trust();
      } catch (e) {
        show("INCONCLUSIVE", e.message);
        return;
      }
      const signature = await bytes(picked.signature);
      const h0 = performance.now();
      let r = await hashDocument(picked.document, signature);
      const hashMs = performance.now() - h0;
      let ms = 0;
      if (!r) {
        const input = Object.assign({
          documentHashed: true,
          signature,
          root: cfg.root || "",
          constraints: cfg.constraints || [],
        }, t);
        const t0 = performance.now();
        r = JSON.parse(globalThis.tempelVerify(input));
        ms = performance.now() - t0;
      }
      // Only a verified signature vouches for its time and signer; any
      // other only claims them, and the page says so next to them.
      const ok = r.status === "VERIFIED";
      show(r.status, r.reason, [
        [ok ? "Signed at" : "Claimed signing time (not verified)", signedAt(r.signingTime)],
        [ok ? "Signed by" : "Claimed signer (not verified)", r.identity || (r.signingTime ? "(no identity recorded)" : "")],
        ["Checked against", r.checkedAgainst],
        ["Details", r.detail || r.code],
        ["Document", picked.document.name + (r.documentHash ? " — " + r.documentHash : "")],
        ["Signature", picked.signature.name + (r.kind ? " — " + r.kind : "")],
        ["Publication", r.publication],
        ["Note", (r.notes || []).join("; ")],
        ["Checked in", ms.toFixed(1) + " ms, in this browser (the document read and hashed in " + hashMs.toFixed(0) + " ms)"],
      ]);
      result.dataset.ms = String(ms);
    } finally {
      $("verify").disabled = false;
    }
  }
  $("verify").addEventListener("click", () => verify().catch((e) => show("INCONCLUSIVE", "the check could not run: " + e.message)));

  // Load the verifier: base64 → gunzip → WebAssembly, all in the page.
  async function load() {
    const t0 = performance.now();
    const b64 = $("wasm").textContent.trim();
    const raw = atob(b64);
    const gz = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) gz[i] = raw.charCodeAt(i);
    const wasm = await new Response(new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
    const ready = new Promise((res) => { globalThis.tempelReady = res; });
    const go = new Go();
    const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
    go.run(instance);
    await ready;
    document.body.dataset.loadMs = String(performance.now() - t0);
    document.body.dataset.ready = "true";
    $("verify").disabled = false;
    result.dataset.status = "";
    result.textContent = "Ready: choose the document and its signature, then press Verify.";
  }
  load().catch((e) => show("INCONCLUSIVE", "the verifier could not be loaded in this browser: " + e.message));
})();
