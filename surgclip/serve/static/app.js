// surgclip search page: talks only to the JSON API (/api/videos, /api/search, /api/similar).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { videos: {}, timer: null };

function mmss(t) {
  t = Math.max(0, Math.floor(t));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
  const mm = String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  return h ? h + ":" + mm : mm;
}

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

async function api(path) {
  const r = await fetch(path);
  let body;
  try { body = await r.json(); } catch (e) { body = { error: "HTTP " + r.status }; }
  if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
  return body;
}

async function loadVideos() {
  const d = await api("/api/videos");
  state.videos = Object.fromEntries(d.videos.map((v) => [v.id, v]));
  $("info").textContent = `model ${d.model} (${d.model_name}) · index ${d.index} (${d.index_kind} search) · ${d.num_clips} clips in ${d.num_videos} videos`;
  for (const v of d.videos) {
    const o = document.createElement("option");
    o.value = v.id;
    o.textContent = v.available ? v.id : v.id + " (source missing)";
    $("video").appendChild(o);
  }
}

function paramsFromUrl() {
  const p = new URLSearchParams(location.search);
  return { q: p.get("q"), k: p.get("k"), video: p.get("video"), similar: p.get("similar") };
}

async function run(params, push) {
  const url = new URLSearchParams();
  if (params.similar != null) url.set("similar", params.similar); else url.set("q", params.q || "");
  if (params.k) url.set("k", params.k);
  if (params.video) url.set("video", params.video);
  if (push) history.pushState(null, "", "/?" + url.toString());
  $("q").value = params.q || "";
  if (params.k) $("k").value = params.k;
  $("video").value = params.video || "";
  const apiUrl = params.similar != null
    ? "/api/similar?" + new URLSearchParams({ id: params.similar, k: params.k || $("k").value, ...(params.video ? { video: params.video } : {}) })
    : "/api/search?" + new URLSearchParams({ q: params.q || "", k: params.k || $("k").value, ...(params.video ? { video: params.video } : {}) });
  let data;
  try {
    data = await api(apiUrl);
  } catch (e) {
    showMessage(e.message);
    render([]);
    $("summary").textContent = "";
    return;
  }
  showMessage("");
  const what = data.similar_to
    ? `clips like ${data.similar_to.video} ${mmss(data.similar_to.start)}–${mmss(data.similar_to.end)}`
    : `“${data.query}”`;
  $("summary").textContent = `${data.hits.length} hits for ${what} in ${data.took_ms} ms · answered by model ${data.model} on index ${data.index} (${data.num_clips} clips)`;
  render(data.hits);
}

function render(hits) {
  const grid = $("hits");
  grid.replaceChildren();
  hits.forEach((hit, r) => {
    const card = document.createElement("article");
    card.className = "hit" + (hit.available ? "" : " missing");
    card.dataset.id = hit.id;
    card.dataset.video = hit.video;
    card.dataset.start = hit.start;
    const img = document.createElement("img");
    img.className = "strip";
    img.alt = `${hit.video} ${mmss(hit.start)}–${mmss(hit.end)}`;
    if (hit.available) img.src = "/thumb/" + hit.id;
    const meta = document.createElement("div");
    meta.className = "meta";
    for (const [cls, text] of [["rank", String(r + 1) + "."], ["video", hit.video],
      ["time", `${mmss(hit.start)}–${mmss(hit.end)}`], ["score", hit.score.toFixed(3)]]) {
      const s = document.createElement("span");
      s.className = cls;
      s.textContent = text;
      meta.appendChild(s);
    }
    if (!hit.available) {
      const s = document.createElement("span");
      s.textContent = "source missing";
      meta.appendChild(s);
    }
    const actions = document.createElement("div");
    actions.className = "actions";
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "more like this";
    more.addEventListener("click", (ev) => {
      ev.stopPropagation();
      run({ similar: hit.id, k: $("k").value, video: $("video").value }, true);
    });
    actions.appendChild(more);
    card.append(img, meta, actions);
    card.addEventListener("click", () => play(hit));
    grid.appendChild(card);
  });
}

function stopSequence() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function play(hit) {
  const v = state.videos[hit.video] || {};
  if (!hit.available) {
    showMessage(`Cannot play ${hit.video}: its source was deleted or moved since it was indexed.`);
    return;
  }
  showMessage("");
  stopSequence();
  $("player-panel").hidden = false;
  $("player-title").textContent = `${hit.video} from ${mmss(hit.start)} (clip ${mmss(hit.start)}–${mmss(hit.end)}, score ${hit.score.toFixed(3)})`;
  const player = $("player");
  if (v.kind === "frames") {
    player.pause();
    player.hidden = true;
    playSequence(hit, v.fps || 1);
    return;
  }
  $("sequence-box").hidden = true;
  player.hidden = false;
  const src = "/media/" + encodeURIComponent(hit.video);
  const seekAndPlay = () => {
    player.addEventListener("seeked", () => {
      player.play().catch((e) => showMessage(`Cannot play ${hit.video}: ${e.message}`));
    }, { once: true });
    player.currentTime = hit.start;
  };
  player.onerror = () => showMessage(`Cannot play ${hit.video}: ${(player.error && player.error.message) || "the browser could not decode it"}`);
  if (player.dataset.src !== src) {
    player.dataset.src = src;
    player.addEventListener("loadedmetadata", seekAndPlay, { once: true });
    player.src = src;
  } else {
    seekAndPlay();
  }
  player.scrollIntoView({ block: "nearest" });
}

// Frame folders have no video file: show their images one after another at the folder's fps.
function playSequence(hit, fps) {
  const img = $("sequence");
  let frame = Math.floor(hit.start * fps + 1e-6);
  let paused = false;
  $("sequence-box").hidden = false;
  const show = () => {
    img.src = `/frames/${encodeURIComponent(hit.video)}/${frame}`;
    $("sequence-time").textContent = mmss(frame / fps);
  };
  img.onerror = stopSequence;  // past the last frame
  show();
  state.timer = setInterval(() => { if (!paused) { frame += 1; show(); } }, 1000 / fps);
  $("sequence-toggle").textContent = "pause";
  $("sequence-toggle").onclick = () => {
    paused = !paused;
    $("sequence-toggle").textContent = paused ? "play" : "pause";
  };
}

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  run({ q: $("q").value, k: $("k").value, video: $("video").value }, true);
});
window.addEventListener("popstate", () => run(paramsFromUrl(), false));

(async () => {
  try {
    await loadVideos();
  } catch (e) {
    showMessage(e.message);
    return;
  }
  const p = paramsFromUrl();
  if (p.q != null || p.similar != null) run(p, false);
})();
