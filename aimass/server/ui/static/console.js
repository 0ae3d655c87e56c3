// AI Mass console: sends the pages' forms to the API with the CSRF token, runs the
// playground (streaming chat), refreshes parts of a page and draws the live metric charts.
// No framework and no build step: every function here is small enough to read.
"use strict";

const API = "/ui/api";

function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function say(text, isError) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function call(path, init) {
  const headers = Object.assign({ "x-csrf-token": csrf() }, init.headers || {});
  return fetch(path, Object.assign({}, init, { headers, credentials: "same-origin" }));
}

async function errorText(response) {
  try {
    const body = await response.json();
    const err = body.error;
    return `${response.status}: ${typeof err === "string" ? err : err.message}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

// ---- forms that call the API (data-api) --------------------------------------------------

function setPath(target, path, value) {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
  node[parts[parts.length - 1]] = value;
}

function fieldValue(el) {
  if (el.type === "checkbox") return el.checked;
  const text = el.value.trim();
  if (text === "") return undefined;
  switch (el.dataset.type) {
    case "int": return parseInt(text, 10);
    case "list": return text.split(",").map((s) => s.trim()).filter(Boolean);
    case "json": return JSON.parse(text);
    default: return text;
  }
}

function formBody(form) {
  const raw = form.querySelector('[data-body="json"]');
  if (raw) return JSON.stringify(JSON.parse(raw.value));
  const out = {};
  for (const el of form.querySelectorAll("[data-json]")) {
    const value = fieldValue(el);
    if (value !== undefined) setPath(out, el.dataset.json, value);
  }
  return JSON.stringify(out);
}

function formUrl(form) {
  let url = form.dataset.api;
  for (const el of form.querySelectorAll("[data-path-param]")) {
    url = url.replace(`{${el.dataset.pathParam}}`, encodeURIComponent(el.value.trim()));
  }
  const query = new URLSearchParams();
  for (const el of form.querySelectorAll("[data-query]")) {
    if (el.checked) query.set(el.dataset.query, "true");
  }
  const text = query.toString();
  return text ? url + (url.includes("?") ? "&" : "?") + text : url;
}

async function refreshParts() {
  // Partial update: fetch this page again and swap its tables in place.
  const response = await fetch(location.href, { credentials: "same-origin" });
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  document.querySelectorAll(".scroll").forEach((old, i) => {
    const next = fresh.querySelectorAll(".scroll")[i];
    if (next) old.replaceWith(next);
  });
}

async function act(form) {
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
  let body;
  try {
    body = formBody(form);
  } catch (e) {
    say(`Not valid JSON: ${e.message}`, true);
    return;
  }
  const button = form.querySelector("button");
  if (button) button.disabled = true;
  say("Working…");
  try {
    const response = await call(formUrl(form), {
      method: form.dataset.method || "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    if (!response.ok) {
      say(await errorText(response), true);
      return;
    }
    const then = form.dataset.then || "";
    if (then.startsWith("/")) {
      location.href = then;
      return;
    }
    if (form.dataset.show) {
      const data = await response.json();
      const box = document.querySelector(".secret");
      box.hidden = false;
      box.querySelector(".shown").textContent = data[form.dataset.show];
    }
    say("Done.");
    if (then === "reload") location.reload();
    else if (then === "reload-later") await refreshParts();
  } finally {
    if (button) button.disabled = false;
  }
}

// ---- playground (data-play) ----------------------------------------------------------------

function lines(text) {
  return text.split("\n").map((s) => s.trim()).filter(Boolean);
}

function numberOr(value, fallback) {
  const n = Number(value);
  return value === "" || Number.isNaN(n) ? fallback : n;
}

async function base64Of(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

const PLAYS = {
  chat(f) {
    const messages = [];
    if (f.get("system").trim()) messages.push({ role: "system", content: f.get("system") });
    messages.push({ role: "user", content: f.get("message") });
    const body = {
      model: f.get("model"), messages, stream: f.get("stream") === "on",
      temperature: numberOr(f.get("temperature"), 0.7), max_tokens: numberOr(f.get("max_tokens"), 64),
    };
    if (f.get("json_schema").trim()) {
      body.response_format = { type: "json_schema", json_schema: { name: "answer", schema: JSON.parse(f.get("json_schema")) } };
    }
    if (f.get("tools").trim()) body.tools = JSON.parse(f.get("tools"));
    return { path: "/v1/chat/completions", body, sdk: "client.chat.completions.create" };
  },
  completion(f) {
    const body = {
      model: f.get("model"), prompt: f.get("prompt"), stream: f.get("stream") === "on",
      temperature: numberOr(f.get("temperature"), 0.7), max_tokens: numberOr(f.get("max_tokens"), 32),
    };
    return { path: "/v1/completions", body, sdk: "client.completions.create" };
  },
  embeddings(f) {
    return { path: "/v1/embeddings", body: { model: f.get("model"), input: lines(f.get("input")) }, sdk: "client.embeddings.create" };
  },
  rerank(f) {
    const body = { model: f.get("model"), query: f.get("query"), documents: lines(f.get("documents")) };
    return { path: "/v1/rerank", body, sdk: null };
  },
  async image(f) {
    const image = await base64Of(f.get("file"));
    if (f.get("task") === "ocr") return { path: "/v1/ocr", body: { model: f.get("model"), image }, sdk: null };
    return { path: "/v1/images/classifications", body: { model: f.get("model"), images: [{ image }] }, sdk: null };
  },
  transcription(f) {
    const form = new FormData();
    form.set("model", f.get("model"));
    form.set("file", f.get("file"));
    return { path: "/v1/audio/transcriptions", form, sdk: "client.audio.transcriptions.create" };
  },
  search(f) {
    const store = encodeURIComponent(f.get("store").trim());
    const body = { query: f.get("query") };
    if (f.get("search_mode")) body.search_mode = f.get("search_mode");
    if (f.get("max_num_results")) body.max_num_results = numberOr(f.get("max_num_results"), 10);
    return { path: `/v1/vector_stores/${store}/search`, body, sdk: "client.vector_stores.search" };
  },
  recommend(f) {
    const body = { model: f.get("model"), user: f.get("user").trim(), n: numberOr(f.get("n"), 10) };
    return { path: "/v1/recommendations", body, sdk: null };
  },
  forecast(f) {
    const body = { model: f.get("model"), series_id: f.get("series_id").trim(), horizon: numberOr(f.get("horizon"), 7) };
    return { path: "/v1/forecasts", body, sdk: null };
  },
  attach(f) {
    // Upload to /v1/files; SHOW.attach then adds the new file to the store.
    const form = new FormData();
    form.set("purpose", "assistants");
    form.set("file", f.get("file"));
    return { path: "/v1/files", form, sdk: null };
  },
};

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

function table(out, caption, head, rows) {
  // An answer as a table after its <output> (play() removes the last one), first cell a row header.
  const section = out.closest("section");
  if (!rows.length) return;
  const box = document.createElement("div");
  box.className = "hits";
  const t = document.createElement("table");
  t.id = `${section.id}-hits`;
  t.createCaption().textContent = caption;
  const top = t.createTHead().insertRow();
  for (const name of head) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    top.append(th);
  }
  const body = t.createTBody();
  for (const cells of rows) {
    const row = body.insertRow();
    const first = document.createElement("th");
    first.scope = "row";
    first.textContent = cells[0];
    row.append(first);
    for (const cell of cells.slice(1)) row.insertCell().textContent = cell;
  }
  box.append(t);
  out.after(box);
}

const SHOW = {
  embeddings(data, out) {
    const vectors = data.data.map((d) => d.embedding);
    let text = `${vectors.length} vectors of dimension ${vectors[0].length}\n`;
    for (let i = 0; i < vectors.length; i++) {
      for (let j = i + 1; j < vectors.length; j++) {
        text += `similarity(${i + 1}, ${j + 1}) = ${cosine(vectors[i], vectors[j]).toFixed(4)}\n`;
      }
    }
    out.textContent = text;
    out.dataset.dimension = vectors[0].length;
  },
  chat(data, out) {
    const message = data.choices[0].message;
    out.textContent = message.content || JSON.stringify(message.tool_calls, null, 2);
  },
  completion(data, out) { out.textContent = data.choices[0].text; },
  search(data, out) {
    const n = data.data.length;
    out.textContent = `${n} result${n === 1 ? "" : "s"} for “${data.search_query.join(" / ")}”`;
    const rows = data.data.map((hit) => [hit.filename || hit.file_id, hit.score.toFixed(4), hit.content.map((c) => c.text).join("\n")]);
    table(out, "Best first", ["File", "Score", "Text"], rows);
  },
  recommend(data, out) {
    out.textContent = `${data.data.length} items for ${data.user}` + (data.fallback ? ` (unknown user: ${data.fallback})` : "");
    table(out, "Best first", ["Rank", "Item", "Score"], data.data.map((d, i) => [String(i + 1), d.item, d.score.toFixed(4)]));
  },
  forecast(data, out) {
    const levels = Object.keys(data.intervals);
    out.textContent = `${data.timestamps.length} points of ${data.series_id} by ${data.method} (from ${data.observations_used} observations)`;
    const rows = data.timestamps.map((t, i) => [
      new Date(t * 1000).toISOString().replace("T", " ").replace(".000Z", ""),
      data.mean[i].toFixed(3),
      ...levels.map((l) => `${data.intervals[l].lo[i].toFixed(3)} – ${data.intervals[l].hi[i].toFixed(3)}`),
    ]);
    table(out, "Forecast (UTC)", ["Time", "Mean", ...levels.map((l) => `${l}% interval`)], rows);
  },
  async attach(data, out) {
    const store = encodeURIComponent(out.closest("section").querySelector('[name="store"]').value);
    const response = await call(`${API}/v1/vector_stores/${store}/files`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ file_id: data.id }),
    });
    if (!response.ok) throw new Error(await errorText(response));
    const added = await response.json();
    out.textContent = `${data.filename} uploaded as ${data.id}, added to the store: ${added.status}`;
    await refreshParts();
  },
};

function snippet(section, request) {
  const host = location.origin;
  const curl = section.querySelector(".curl");
  const python = section.querySelector(".python");
  if (!curl) return;
  if (request.form) {
    curl.textContent = `curl ${host}${request.path} \\\n  -H "Authorization: Bearer $AIMASS_API_KEY" \\\n  -F model=${request.form.get("model")} -F file=@audio.wav`;
  } else {
    const body = JSON.stringify(request.body, null, 2).replace(/'/g, "'\\''");
    curl.textContent = `curl ${host}${request.path} \\\n  -H "Authorization: Bearer $AIMASS_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`;
  }
  const head = `from openai import OpenAI\n\nclient = OpenAI(base_url="${host}/v1", api_key=os.environ["AIMASS_API_KEY"])\n`;
  if (request.sdk && request.body) {
    const args = Object.entries(request.body).map(([k, v]) => `    ${k}=${JSON.stringify(v)},`).join("\n");
    python.textContent = `import os\n${head}answer = ${request.sdk}(\n${args}\n)\nprint(answer)`;
  } else if (request.sdk) {
    python.textContent = `import os\n${head}with open("audio.wav", "rb") as f:\n    print(${request.sdk}(model="${request.form.get("model")}", file=f))`;
  } else {
    const body = JSON.stringify(request.body).replace(/true/g, "True").replace(/false/g, "False").replace(/null/g, "None");
    python.textContent = `import os\n${head}answer = client.post("${request.path.replace("/v1", "")}", body=${body}, cast_to=dict)\nprint(answer)`;
  }
}

async function streamInto(response, out, pick) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      out.textContent += pick(chunk);
    }
  }
}

const PICK = {
  chat: (c) => (c.choices[0] && c.choices[0].delta.content) || "",
  completion: (c) => (c.choices[0] && c.choices[0].text) || "",
};

async function play(form) {
  const kind = form.dataset.play;
  const section = form.closest("section");
  const out = section.querySelector("output");
  section.querySelectorAll(".hits").forEach((old) => old.remove());
  out.textContent = "";
  out.classList.remove("error");
  let request;
  try {
    request = await PLAYS[kind](new FormData(form));
  } catch (e) {
    out.textContent = `Not valid: ${e.message}`;
    out.classList.add("error");
    return;
  }
  snippet(section, request);
  const init = request.form
    ? { method: "POST", body: request.form }
    : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request.body) };
  const button = form.querySelector("button");
  button.disabled = true;
  out.setAttribute("aria-busy", "true");
  try {
    const response = await call(API + request.path, init);
    if (!response.ok) throw new Error(await errorText(response));
    if (request.body && request.body.stream) await streamInto(response, out, PICK[kind]);
    else {
      const data = await response.json();
      if (SHOW[kind]) await SHOW[kind](data, out);
      else out.textContent = JSON.stringify(data, null, 2);
    }
  } catch (e) {
    out.textContent = e.message;
    out.classList.add("error");
  } finally {
    button.disabled = false;
    out.removeAttribute("aria-busy");
    out.dataset.done = "true";
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.api) {
    event.preventDefault();
    act(form);
  } else if (form.dataset.play) {
    event.preventDefault();
    play(form);
  }
});

// ---- job events, loaded when opened ---------------------------------------------------------

document.addEventListener("toggle", async (event) => {
  const details = event.target;
  if (!details.dataset || !details.dataset.events || !details.open) return;
  const response = await fetch(details.dataset.events, { credentials: "same-origin" });
  const pre = details.querySelector(".events");
  if (!response.ok) { pre.textContent = await errorText(response); return; }
  const data = await response.json();
  pre.textContent = data.data.map((e) => `${new Date(e.created_at * 1000).toISOString()} ${e.type || ""} ${JSON.stringify(e.data || e.message || "")}`).join("\n") || "no events";
}, true);

// ---- live metric charts --------------------------------------------------------------------

const COLORS = ["#2563eb", "#d97706", "#dc2626"];

function seriesOf(samples, model, metric) {
  return samples.map((s) => {
    const rows = Object.entries(s.models).filter(([name]) => !model || name === model).map(([, v]) => v[metric]);
    const known = rows.filter((v) => v !== null && v !== undefined);
    if (!known.length) return null;
    return metric.startsWith("p") ? Math.max(...known) : known.reduce((a, b) => a + b, 0);
  });
}

function drawLines(svg, lists) {
  const width = 600, height = 160;
  const all = lists.flat().filter((v) => v !== null);
  const top = Math.max(1e-9, ...all);
  const paths = lists.map((values, k) => {
    const step = width / Math.max(values.length - 1, 1);
    let d = "";
    values.forEach((v, i) => {
      if (v === null) return;
      d += `${d ? "L" : "M"}${(i * step).toFixed(1)},${(height - (v / top) * (height - 10)).toFixed(1)} `;
    });
    return `<path d="${d}" fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="2"/>`;
  });
  svg.innerHTML = `<line x1="0" y1="${height}" x2="${width}" y2="${height}" stroke="#999"/>` + paths.join("");
  svg.dataset.points = String(all.length);
}

async function updateCharts(box) {
  const response = await fetch(box.dataset.history, { credentials: "same-origin" });
  if (!response.ok) return;
  const history = await response.json();
  const select = document.getElementById("metrics-model");
  const names = new Set(history.samples.flatMap((s) => Object.keys(s.models)));
  for (const name of names) {
    if (![...select.options].some((o) => o.value === name)) select.add(new Option(name, name));
  }
  for (const figure of box.querySelectorAll(".live")) {
    const metrics = figure.dataset.metric.split(",");
    const lists = metrics.map((m) => seriesOf(history.samples, select.value, m));
    drawLines(figure.querySelector("svg"), lists);
    const latest = lists.map((l) => l[l.length - 1]).map((v) => (v === null || v === undefined ? "–" : v.toFixed(2)));
    figure.querySelector(".now").textContent = `now: ${latest.join(" / ")} ${figure.dataset.label}`;
  }
  const last = history.samples[history.samples.length - 1];
  box.dataset.updated = last ? String(last.t) : "";
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("charts");
  if (!box) return;
  updateCharts(box);
  setInterval(() => updateCharts(box), 2000);
  document.getElementById("metrics-model").addEventListener("change", () => updateCharts(box));
});
