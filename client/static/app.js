// Browser client: one websocket carries signalling, live control and the server's stats;
// one RTCPeerConnection sends the voice and receives the avatar (video + the audio it was made from).
// With "Typed text" the page is the viewer of an agent session (/agent): the server speaks what is typed.
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video");

let ws = null;
let pc = null;
let localStream = null;
let audioContext = null;
let avatarId = null;
let statsTimer = null;

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

function setState(state) {
  const badge = $("badge");
  badge.textContent = state;
  badge.className = "badge " + state;
  const running = !["stopped", "closed"].includes(state);
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("interrupt").disabled = !running;
}

function voiceSource() {
  return document.querySelector('input[name="source"]:checked').value;
}

// The voice: the microphone, or an audio file played through WebAudio into a MediaStream track;
// none for typed text, which the server synthesises itself.
async function voiceTrack() {
  const source = voiceSource();
  if (source === "text") return { track: null, play: () => {} };
  if (source === "mic") {
    localStream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    return { track: localStream.getAudioTracks()[0], play: () => {} };
  }
  const file = $("audio-file").files[0];
  if (!file) throw new Error("choose an audio file first");
  audioContext = new AudioContext();
  const buffer = await audioContext.decodeAudioData(await file.arrayBuffer());
  const destination = audioContext.createMediaStreamDestination();
  const player = audioContext.createBufferSource();
  player.buffer = buffer;
  player.connect(destination);
  localStream = destination.stream;
  // Start the file only once the call is up, so its first words are not lost to the handshake.
  return { track: localStream.getAudioTracks()[0], play: () => player.start() };
}

function waitForIce(peer) {
  // The server takes the offer whole (no trickle ICE): wait until every candidate is in it.
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (peer.iceGatheringState === "complete") {
        peer.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    peer.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

// A server started with --token is opened as http://host:port/?token=TOKEN; the page passes it on.
const token = new URLSearchParams(location.search).get("token");

function openSocket(path) {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    const socket = new WebSocket(`${scheme}://${location.host}${path}${query}`);
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error("cannot reach the server's websocket"));
  });
}

// The STUN/TURN servers the server was started with (none on a LAN).
async function iceSettings() {
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const response = await fetch(`/ice${query}`);
  if (!response.ok) throw new Error(`cannot read the ICE settings: ${response.status}`);
  return await response.json();
}

async function start() {
  say("");
  setState("connecting");
  try {
    const voice = await voiceTrack();
    ws = await openSocket(voice.track ? "/ws" : "/agent");
    ws.onmessage = (event) => onServerMessage(JSON.parse(event.data), voice);
    ws.onclose = () => stop("the server closed the connection");

    pc = new RTCPeerConnection(await iceSettings());
    pc.addTransceiver("video", { direction: "recvonly" });
    if (voice.track) pc.addTrack(voice.track, localStream);
    else pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      if (video.srcObject !== stream) video.srcObject = stream;
    };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "connected") {
        setState("live");
        voice.play();
      }
      if (pc && ["failed", "closed"].includes(pc.connectionState)) stop(`connection ${pc.connectionState}`);
    };

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const offer = { type: "offer", sdp: pc.localDescription.sdp };
    if (avatarId) offer.avatar = avatarId;
    const prompt = $("prompt").value.trim();
    if (prompt) offer.prompt = prompt;
    ws.send(JSON.stringify(offer));
    statsTimer = setInterval(updateClientStats, 1000);
  } catch (error) {
    stop();
    say(error.message || String(error), true);
  }
}

async function onServerMessage(message, voice) {
  switch (message.type) {
    case "answer":
      await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      say(`session ${message.session}`);
      break;
    case "stats":
      showServerStats(message);
      break;
    case "prompt":
      say(`style: ${message.text || "default"}`);
      break;
    case "interrupted":
      say("interrupted");
      break;
    case "playback_started":
      say("speaking…");
      break;
    case "playback_finished":
      say(`said ${message.position_s.toFixed(1)} s${message.interrupted ? ", interrupted" : ""}`);
      break;
    case "closed":
      stop(`session ended: ${message.reason}`);
      break;
    case "error":
      say(message.error, true);
      if (!pc || pc.connectionState !== "connected") stop();
      break;
  }
}

function stop(reason) {
  if (ws) {
    ws.onclose = null;
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
    ws.close();
    ws = null;
  }
  if (pc) {
    pc.onconnectionstatechange = null;
    pc.close();
    pc = null;
  }
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  if (audioContext) audioContext.close();
  audioContext = null;
  clearInterval(statsTimer);
  setState("stopped");
  if (reason) say(reason);
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

// --- stats: what this browser sees, and what the server reports ---------------------------------

let presented = 0;
function countFrames() {
  presented += 1;
  video.requestVideoFrameCallback(countFrames);
}
if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) video.requestVideoFrameCallback(countFrames);

let lastPresented = 0;
async function updateClientStats() {
  if (!pc) return;
  const fps = presented - lastPresented;
  lastPresented = presented;
  let rtt = null;
  let decoded = null;
  (await pc.getStats()).forEach((report) => {
    if (report.type === "candidate-pair" && report.nominated && report.currentRoundTripTime !== undefined) {
      rtt = report.currentRoundTripTime;
    }
    if (report.type === "inbound-rtp" && report.kind === "video") decoded = report.framesPerSecond;
  });
  $("stat-fps").textContent = `${fps} fps shown` + (decoded ? `, ${decoded} decoded` : "");
  $("stat-rtt").textContent = rtt === null ? "–" : `${Math.round(rtt * 1000)} ms`;
}

function showServerStats(s) {
  setState(s.state === "speaking" ? "speaking" : "live");
  $("stat-server").textContent = `${s.fps} fps, ${s.frames} frames, ${s.late} late, ${s.filled} filled`;
  $("stat-latency").textContent = `${s.latency_ms} ms in the server`;
  $("stat-render").textContent = s.render_ms_p50 === null ? "–"
    : `${s.render_ms_p50} ms (p95 ${s.render_ms_p95}), CPU ${Math.round(100 * s.render_cpu)} %`;
}

// --- avatar upload ------------------------------------------------------------------------------

async function uploadPhoto() {
  const file = $("photo").files[0];
  if (!file) return;
  $("avatar-status").textContent = "preparing the photo…";
  try {
    const headers = { "Content-Type": file.type, ...(token ? { Authorization: `Bearer ${token}` } : {}) };
    const response = await fetch("/avatars", { method: "POST", body: file, headers });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    avatarId = body.avatar;
    const warnings = (body.info && body.info.warnings) || [];
    $("avatar-status").textContent = `avatar ${avatarId} ready` + (warnings.length ? ` (${warnings.join("; ")})` : "")
      + (pc ? ": it is used from the next Start" : "");
  } catch (error) {
    avatarId = null;
    $("avatar-status").textContent = `photo refused: ${error.message}`;
  }
}

// --- wiring -------------------------------------------------------------------------------------

$("start").onclick = start;
$("stop").onclick = () => stop("stopped");
$("interrupt").onclick = () => send({ type: "interrupt" });
$("photo").onchange = uploadPhoto;
$("hear").onchange = () => { video.muted = !$("hear").checked; };
$("prompt-form").onsubmit = (event) => {
  event.preventDefault();
  send({ type: "prompt", text: $("prompt").value.trim() });
};
$("audio-file").onchange = () => { document.querySelector('input[value="file"]').checked = true; };
$("say-form").onsubmit = (event) => {
  event.preventDefault();
  if (!ws || voiceSource() !== "text") {
    say('choose "Typed text", press Start, then type', true);
    return;
  }
  send({ type: "say", text: $("say-text").value.trim() });
};

setState("stopped");
if (new URLSearchParams(location.search).get("autostart") === "1") start();
