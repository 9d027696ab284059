/*
 * The interop harness of signalwire-conversation: drives the OFFICIAL SignalWire JS client
 * (@signalwire/client, pinned in package-lock.json beside this file) against the project's
 * emulator and prints a JSON summary of every step. Exit status 0 only if every required step
 * passed. scripts/interop.py installs the pinned packages (npm ci), starts the emulator, sets
 * the variables below and runs this file; tests/emulator/test_interop.py runs that script.
 * The wire protocol exercised is described in docs/protocol.md.
 *
 * Environment:
 *   BASE_URL     http(s) base of the server's REST API        (required)
 *   WS_URL       ws(s) URL of the server's WebSocket endpoint (required)
 *   TOKEN_A      SAT of subscriber A (driven by the official client)   (required)
 *   TOKEN_B      SAT of subscriber B (raw REST, produces inbound traffic) (required)
 *   INJECT       optional extra inbound message source:
 *                  http(s)://...  -> POST JSON {from, sender, from_token, to_address_id, text}
 *                  anything else  -> shell command run with INJECT_FROM_TOKEN, INJECT_FROM_ADDRESS_ID,
 *                                    INJECT_TO_ADDRESS_ID, INJECT_GROUP_ID, INJECT_TEXT, BASE_URL in env
 *   CONTROL_URL  optional control API (the emulator's: state, drop, fail_next, refuse_resumes,
 *                send_raw, disconnect, issue_token) for the resilience steps
 *   OUT          optional file to write the JSON summary to (it is always printed on stdout)
 *   VERBOSE=1    SDK debug logs and one line per step on stderr
 *   STEP_TIMEOUT_MS  per-wait timeout (default 15000)
 *
 * The official client insists on https://fabric.<domain> and wss://<ch> (derived from the
 * token's `ch` header claim). The polyfills below rewrite exactly those URLs to BASE_URL /
 * WS_URL; any other URL (e.g. absolute pagination links) is fetched verbatim.
 */
'use strict'

const fs = require('fs')
const path = require('path')
const { execSync } = require('child_process')
const WS = require('ws')

const env = process.env
const BASE_URL = (env.BASE_URL || '').replace(/\/+$/, '')
const WS_URL = env.WS_URL || ''
const TOKEN_A = env.TOKEN_A || ''
const TOKEN_B = env.TOKEN_B || ''
const INJECT = env.INJECT || ''
const CONTROL_URL = (env.CONTROL_URL || '').replace(/\/+$/, '')
const VERBOSE = env.VERBOSE === '1'
const STEP_TIMEOUT_MS = Number(env.STEP_TIMEOUT_MS || 15000)

for (const [k, v] of Object.entries({ BASE_URL, WS_URL, TOKEN_A, TOKEN_B })) {
  if (!v) {
    console.error(`harness: missing ${k}`)
    process.exit(2)
  }
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------
const b64urlDecode = (s) => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8')
const jweHeader = (token) => {
  try {
    return JSON.parse(b64urlDecode(token.split('.')[0]))
  } catch (e) {
    return {}
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const nonce = Math.random().toString(36).slice(2, 8)
const redact = (h) => {
  const out = {}
  for (const [k, v] of Object.entries(h || {})) {
    out[k] = k.toLowerCase() === 'authorization' ? String(v).replace(/Bearer\s+(.{6}).*/, 'Bearer $1…') : v
  }
  return out
}
const tryJSON = (s) => {
  try {
    return JSON.parse(s)
  } catch (e) {
    return s
  }
}

// The host names the official client derives from the token (re-derived here, same rule:
// REST = https://fabric.<ch minus its first label>, WS = wss://<ch>; no ch -> signalwire.com).
const headerA = jweHeader(TOKEN_A)
const ch = headerA.ch
const CLIENT_REST_ORIGIN = ch ? `https://fabric.${ch.split('.').slice(1).join('.')}` : 'https://fabric.signalwire.com'
const CLIENT_WS_URL = ch ? (/^wss?:\/\//.test(ch) ? ch : `wss://${ch}`) : 'wss://relay.signalwire.com'

// ---------------------------------------------------------------------------
// wire capture + polyfills (installed BEFORE the SDK is loaded)
// ---------------------------------------------------------------------------
const wire = { http: [], ws: [], rewrites: [] }
const t0 = Date.now()
const stamp = () => Date.now() - t0

const realFetch = globalThis.fetch
function rewriteHttpUrl(u) {
  const url = new URL(u)
  if (url.origin === CLIENT_REST_ORIGIN) {
    const target = new URL(url.pathname + url.search, BASE_URL + '/')
    // keep a BASE_URL path prefix, if any
    const base = new URL(BASE_URL + '/')
    if (base.pathname !== '/') target.pathname = base.pathname.replace(/\/$/, '') + url.pathname
    return target.toString()
  }
  return u
}
globalThis.fetch = async function harnessFetch(input, init = {}) {
  const original = typeof input === 'string' ? input : input.url
  const target = rewriteHttpUrl(original)
  if (target !== original) wire.rewrites.push({ from: original, to: target })
  const entry = {
    t: stamp(),
    method: (init.method || 'GET').toUpperCase(),
    url: original,
    sent_to: target,
    headers: redact(init.headers),
    body: init.body ? tryJSON(init.body) : undefined,
  }
  wire.http.push(entry)
  try {
    const res = await realFetch(target, init)
    const text = await res.clone().text()
    entry.status = res.status
    entry.response = tryJSON(text)
    return res
  } catch (e) {
    entry.error = String(e && e.message ? e.message : e)
    throw e
  }
}

class HarnessWebSocket extends WS {
  constructor(url, protocols) {
    const target = WS_URL
    wire.rewrites.push({ from: String(url), to: target })
    super(target, protocols)
    this._sw_url = String(url)
    const origSend = this.send.bind(this)
    this.send = (data, ...rest) => {
      wire.ws.push({ t: stamp(), dir: 'sent', frame: tryJSON(String(data)) })
      return origSend(data, ...rest)
    }
    this.addEventListener('message', (ev) => {
      wire.ws.push({ t: stamp(), dir: 'recv', frame: tryJSON(String(ev.data)) })
    })
    this.addEventListener('open', () => wire.ws.push({ t: stamp(), dir: 'open', url: this._sw_url }))
    this.addEventListener('close', (ev) => wire.ws.push({ t: stamp(), dir: 'close', code: ev.code }))
  }
}
globalThis.WebSocket = HarnessWebSocket

class MemoryStorage {
  constructor() {
    this._m = new Map()
  }
  get length() {
    return this._m.size
  }
  key(i) {
    return Array.from(this._m.keys())[i] ?? null
  }
  getItem(k) {
    return this._m.has(String(k)) ? this._m.get(String(k)) : null
  }
  setItem(k, v) {
    this._m.set(String(k), String(v))
  }
  removeItem(k) {
    this._m.delete(String(k))
  }
  clear() {
    this._m.clear()
  }
}
const win = new EventTarget()
win.sessionStorage = new MemoryStorage()
win.localStorage = new MemoryStorage()
win.location = new URL('http://localhost/')
win.navigator = { userAgent: 'node-harness', onLine: true, language: 'en-US' }
win.setTimeout = setTimeout
win.clearTimeout = clearTimeout
globalThis.window = win
globalThis.sessionStorage = win.sessionStorage
globalThis.localStorage = win.localStorage
if (!globalThis.navigator) globalThis.navigator = win.navigator
if (!globalThis.document) {
  globalThis.document = { addEventListener() {}, removeEventListener() {}, visibilityState: 'visible' }
}

// ---------------------------------------------------------------------------
// the official client
// ---------------------------------------------------------------------------
const pkgDir = path.dirname(require.resolve('@signalwire/client/package.json'))
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'))
const corePkg = JSON.parse(
  fs.readFileSync(path.join(path.dirname(require.resolve('@signalwire/core/package.json')), 'package.json'), 'utf8')
)
const { SignalWire } = require('@signalwire/client')

// ---------------------------------------------------------------------------
// steps
// ---------------------------------------------------------------------------
const steps = []
const summary = {
  ok: false,
  client: { package: pkg.name, version: pkg.version, core: corePkg.version, node: process.version },
  server: { base_url: BASE_URL, ws_url: WS_URL, ch: ch || null, client_rest_origin: CLIENT_REST_ORIGIN, client_ws_url: CLIENT_WS_URL },
  steps,
}

async function step(name, fn, { required = true } = {}) {
  const s = { name, required, ok: false }
  const started = Date.now()
  try {
    const detail = await fn()
    s.ok = true
    if (detail !== undefined) s.detail = detail
  } catch (e) {
    s.error = e && e.message ? e.message : String(e)
    if (e && e.cause) s.cause = String(e.cause && e.cause.message ? e.cause.message : e.cause)
  }
  s.ms = Date.now() - started
  steps.push(s)
  if (VERBOSE) console.error(`[harness] ${s.ok ? 'ok  ' : 'FAIL'} ${name}${s.error ? ' — ' + s.error : ''}`)
  return s
}
function skip(name, why, { required = false } = {}) {
  steps.push({ name, required, ok: !required, skipped: true, detail: why })
}
const assert = (cond, msg) => {
  if (!cond) throw new Error(msg)
}

async function rawRest(token, method, p, body) {
  const url = /^https?:/.test(p) ? p : BASE_URL + p
  const res = await realFetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  return { status: res.status, body: tryJSON(text) }
}
async function control(name, body) {
  const res = await realFetch(`${CONTROL_URL}/${name}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, body: tryJSON(await res.text()) }
}

// events received through conversation.subscribe
const events = []
const waiters = []
function onEvent(ev) {
  events.push({ t: stamp(), ev })
  for (const w of waiters.slice()) {
    if (w.pred(ev)) {
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve(ev)
    }
  }
}
function waitEvent(pred, what, timeout = STEP_TIMEOUT_MS) {
  const found = events.find((e) => pred(e.ev))
  if (found) return Promise.resolve(found.ev)
  return new Promise((resolve, reject) => {
    const w = { pred, resolve }
    waiters.push(w)
    setTimeout(() => {
      const i = waiters.indexOf(w)
      if (i >= 0) {
        waiters.splice(i, 1)
        reject(new Error(`timeout waiting for ${what}`))
      }
    }, timeout)
  })
}
async function waitFor(pred, what, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout
  while (Date.now() < deadline) {
    if (await pred()) return true
    await sleep(50)
  }
  throw new Error(`timeout waiting for ${what}`)
}
const connectFrames = () => wire.ws.filter((w) => w.dir === 'sent' && w.frame && w.frame.method === 'signalwire.connect')

async function main() {
  let client
  let addrA
  let addrB
  let groupId
  const sentTexts = []

  await step('connect (SignalWire({token}))', async () => {
    client = await Promise.race([
      SignalWire({ token: TOKEN_A, logLevel: VERBOSE ? 'debug' : 'error' }),
      sleep(STEP_TIMEOUT_MS).then(() => {
        throw new Error(`not connected within ${STEP_TIMEOUT_MS} ms`)
      }),
    ])
    const cf = connectFrames()
    assert(cf.length >= 1, 'no signalwire.connect frame was sent')
    return { connect_params: cf[0].frame.params }
  })
  if (!client) return

  await step('address.getMyAddresses (GET /api/fabric/subscriber/info)', async () => {
    const addrs = await client.address.getMyAddresses()
    assert(Array.isArray(addrs) && addrs.length > 0 && addrs[0].id, 'no fabric_addresses[0].id')
    addrA = addrs[0].id
    return { address_id: addrA, count: addrs.length }
  })

  await step('peer B address (raw GET /api/fabric/subscriber/info with TOKEN_B)', async () => {
    const r = await rawRest(TOKEN_B, 'GET', '/api/fabric/subscriber/info')
    assert(r.status === 200, `status ${r.status}`)
    addrB = r.body.fabric_addresses[0].id
    assert(addrB && addrB !== addrA, 'B has no distinct address')
    return { address_id: addrB }
  })

  await step('conversation.getConversations', async () => {
    const res = await client.conversation.getConversations()
    assert(Array.isArray(res.data), 'data is not an array')
    return { count: res.data.length, hasNext: res.hasNext, hasPrev: res.hasPrev }
  })

  await step('conversation.join({addressIds:[B, A], fromAddressId:A})', async () => {
    const res = await client.conversation.join({ addressIds: [addrB, addrA], fromAddressId: addrA })
    assert(typeof res.group_id === 'string' && res.group_id, 'no group_id')
    groupId = res.group_id
    return res
  })

  await step('conversation.join is idempotent (same group_id)', async () => {
    const res = await client.conversation.join({ addressIds: [addrB, addrA], fromAddressId: addrA })
    assert(res.group_id === groupId, `second join gave ${res.group_id}, first ${groupId}`)
    return { group_id: res.group_id }
  })

  let sub
  await step('conversation.subscribe(callback)', async () => {
    sub = await client.conversation.subscribe(onEvent)
    assert(sub && typeof sub.unsubscribe === 'function', 'no unsubscribe()')
  })

  await step('conversation.sendMessage({groupId, fromAddressId, text, metadata})', async () => {
    const text = `hello from A ${nonce} #1`
    const body = await client.conversation.sendMessage({ groupId, fromAddressId: addrA, text, metadata: { harness: nonce } })
    sentTexts.push(text)
    return body
  })

  await step('own message is echoed on the socket (is_author)', async () => {
    const ev = await waitEvent((e) => e.text === sentTexts[0], 'own conversation.message', 5000)
    return { group_id: ev.group_id, subtype: ev.subtype, user_name: ev.user_name }
  }, { required: false })

  await step('conversation.getConversationMessages({groupId})', async () => {
    const res = await client.conversation.getConversationMessages({ groupId })
    assert(Array.isArray(res.data), 'data is not an array')
    const found = res.data.find((m) => m.text === sentTexts[0])
    assert(found, 'sent message not in the conversation history')
    assert(res.data[0].text === sentTexts[0], 'newest message is not first')
    return { count: res.data.length, first: res.data[0], hasNext: res.hasNext }
  })

  await step('pagination: pageSize=2 + nextPage() via absolute links.next', async () => {
    for (const i of [2, 3]) {
      const text = `hello from A ${nonce} #${i}`
      await client.conversation.sendMessage({ groupId, fromAddressId: addrA, text })
      sentTexts.push(text)
    }
    const p1 = await client.conversation.getConversationMessages({ groupId, pageSize: 2 })
    assert(p1.data.length === 2, `page 1 has ${p1.data.length} items`)
    assert(p1.hasNext, 'page 1 hasNext is false')
    const p2 = await p1.nextPage()
    assert(p2 && p2.data.length >= 1, 'page 2 empty')
    assert(p2.hasPrev, 'page 2 hasPrev is false')
    const texts = [...p1.data, ...p2.data].map((m) => m.text)
    const ours = texts.filter((t) => t && t.includes(nonce))
    assert(JSON.stringify(ours.slice(0, 3)) === JSON.stringify([sentTexts[2], sentTexts[1], sentTexts[0]]),
      `order across pages is ${JSON.stringify(ours)}`)
    const ids = [...p1.data, ...p2.data].map((m) => m.id)
    assert(new Set(ids).size === ids.length, 'duplicate ids across pages')
    const back = await p2.prevPage()
    assert(back && back.data.length === 2 && back.data[0].id === p1.data[0].id, 'prevPage() did not return page 1')
    const nextUrl = wire.http.filter((h) => h.url.includes('page_token')).map((h) => h.url)
    return { page1: p1.data.map((m) => m.text), page2: p2.data.map((m) => m.text), followed_links: nextUrl }
  })

  await step('conversation.getMessages({pageSize:10})', async () => {
    const res = await client.conversation.getMessages({ pageSize: 10 })
    assert(Array.isArray(res.data), 'data is not an array')
    assert(res.data.some((m) => m.text === sentTexts[2]), 'latest sent message missing from getMessages')
    return { count: res.data.length, hasNext: res.hasNext }
  })

  await step('conversation.getConversations lists the joined group', async () => {
    const res = await client.conversation.getConversations()
    const conv = res.data.find((c) => c.groupId === groupId)
    assert(conv, 'joined group not listed')
    const msgs = await conv.getMessages({ pageSize: 1 })
    assert(msgs.data.length === 1 && msgs.data[0].text === sentTexts[2], 'ConversationAPI.getMessages wrong')
    return { count: res.data.length, name: conv.name, createdAt: conv.createdAt, lastMessageAt: conv.lastMessageAt }
  })

  // ---- inbound traffic -----------------------------------------------------
  await step('inbound: B joins + POST /api/fabric/messages -> A receives conversation.message', async () => {
    const j = await rawRest(TOKEN_B, 'POST', '/api/fabric/conversations/join', {
      from_fabric_address_id: addrB,
      fabric_address_ids: [addrA, addrB],
    })
    assert(j.status >= 200 && j.status < 300, `B join status ${j.status}: ${JSON.stringify(j.body)}`)
    assert(j.body.group_id === groupId, `B got group ${j.body.group_id}, A has ${groupId}`)
    const text = `inbound from B ${nonce}`
    const s = await rawRest(TOKEN_B, 'POST', '/api/fabric/messages', { group_id: groupId, from_fabric_address_id: addrB, text })
    assert(s.status >= 200 && s.status < 300, `B send status ${s.status}: ${JSON.stringify(s.body)}`)
    const ev = await waitEvent((e) => e.text === text, 'inbound conversation.message')
    assert(ev.group_id === groupId, 'event group_id mismatch')
    assert(ev.subtype === 'chat', `subtype ${ev.subtype}`)
    return ev
  })

  if (INJECT) {
    await step(`inbound: INJECT (${/^https?:/.test(INJECT) ? 'URL' : 'command'}) -> A receives it`, async () => {
      const text = `injected ${nonce}`
      if (/^https?:/.test(INJECT)) {
        const res = await realFetch(INJECT, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ from: TOKEN_B, sender: TOKEN_B, from_token: TOKEN_B, from_address_id: addrB, to_address_id: addrA, group_id: undefined, text }),
        })
        assert(res.ok, `INJECT URL answered ${res.status}`)
      } else {
        execSync(INJECT, {
          stdio: ['ignore', 'ignore', 'inherit'],
          timeout: STEP_TIMEOUT_MS,
          env: { ...process.env, INJECT_FROM_TOKEN: TOKEN_B, INJECT_FROM_ADDRESS_ID: addrB, INJECT_TO_ADDRESS_ID: addrA, INJECT_GROUP_ID: groupId, INJECT_TEXT: text },
        })
      }
      const ev = await waitEvent((e) => e.text === text, 'injected conversation.message')
      return { group_id: ev.group_id, from: ev.from_fabric_address_id || ev.from_address_id }
    })
  } else {
    skip('inbound: INJECT', 'INJECT not set (B over REST was the inbound source)')
  }

  // ---- chat namespace (exercises GET /api/fabric/addresses/{id}) ------------
  await step('chat.getMessages({groupId}) (user_name lookup via /api/fabric/addresses/{id})', async () => {
    const res = await client.chat.getMessages({ groupId })
    assert(Array.isArray(res.data) && res.data.length > 0, 'no chat messages')
    return { count: res.data.length, first: { text: res.data[0].text, user_name: res.data[0].user_name } }
  }, { required: false })

  // ---- resilience (needs a control API) --------------------------------------
  if (CONTROL_URL) {
    await step('acks: every signalwire.event was acked by the client', async () => {
      await waitFor(async () => {
        const st = await control('state')
        return Object.values(st.body.unacked || {}).every((ids) => ids.length === 0)
      }, 'all events acked', 5000)
      const recvEvents = wire.ws.filter((w) => w.dir === 'recv' && w.frame && w.frame.method === 'signalwire.event').map((w) => w.frame.id)
      const acks = new Set(wire.ws.filter((w) => w.dir === 'sent' && w.frame && w.frame.result && !w.frame.method).map((w) => w.frame.id))
      assert(recvEvents.every((id) => acks.has(id)), 'some event ids were not acked')
      return { events: recvEvents.length }
    }, { required: false })

    await step('server signalwire.ping answered by the client', async () => {
      await waitFor(() => wire.ws.some((w) => w.dir === 'recv' && w.frame && w.frame.method === 'signalwire.ping'), 'a server ping', 8000)
      const ping = wire.ws.find((w) => w.dir === 'recv' && w.frame && w.frame.method === 'signalwire.ping').frame
      await waitFor(() => wire.ws.some((w) => w.dir === 'sent' && w.frame && w.frame.id === ping.id && w.frame.result), 'ping reply', 3000)
      const reply = wire.ws.find((w) => w.dir === 'sent' && w.frame && w.frame.id === ping.id).frame
      return { ping, reply }
    }, { required: false })

    await step('drop connection -> client reconnects and resumes (protocol + authorization_state)', async () => {
      const before = connectFrames().length
      const r = await control('drop', {})
      assert(r.status === 200 && r.body.dropped >= 1, `drop answered ${JSON.stringify(r.body)}`)
      await waitFor(() => connectFrames().length > before, 'a new signalwire.connect', 10000)
      const params = connectFrames()[before].frame.params
      // a connect result after that frame: by position in the capture, not by time (both can fall
      // in the same millisecond on loopback)
      const reconnectAt = wire.ws.indexOf(connectFrames()[before])
      await waitFor(() => wire.ws.slice(reconnectAt + 1).some((w) => w.dir === 'recv' && w.frame && w.frame.result && w.frame.result.protocol), 'connect result', 10000)
      const text = `after reconnect ${nonce}`
      const s = await rawRest(TOKEN_B, 'POST', '/api/fabric/messages', { group_id: groupId, from_fabric_address_id: addrB, text })
      assert(s.status < 300, `B send status ${s.status}`)
      await waitEvent((e) => e.text === text, 'message after reconnect')
      return { reconnect_params: params }
    }, { required: false })

    await step('resume refused (-32002) -> client falls back to a fresh connect', async () => {
      const before = connectFrames().length
      await control('refuse_resumes', { count: 1 })
      await control('drop', {})
      await waitFor(() => connectFrames().length >= before + 2, 'refused resume + fresh connect', 12000)
      const frames = connectFrames().slice(before).map((f) => f.frame.params)
      const text = `after refused resume ${nonce}`
      await waitFor(async () => {
        const st = await control('state')
        return (st.body.connections || []).some((c) => c.authenticated)
      }, 'an authenticated connection', 10000)
      const s = await rawRest(TOKEN_B, 'POST', '/api/fabric/messages', { group_id: groupId, from_fabric_address_id: addrB, text })
      assert(s.status < 300, `B send status ${s.status}`)
      await waitEvent((e) => e.text === text, 'message after fallback')
      return { connect_params_after_drop: frames }
    }, { required: false })
    await control('refuse_resumes', { count: 0 })

    const convRequests = () => wire.http.filter((h) => /\/api\/fabric\/conversations$/.test(new URL(h.url).pathname)).length
    await step('REST 503 ×2 (Retry-After: 1) -> client retries, 3rd attempt succeeds', async () => {
      const before = convRequests()
      await control('fail_next', { n: 2, status: 503, retry_after: 1, method: 'GET', path: '^/api/fabric/conversations$' })
      const res = await client.conversation.getConversations()
      assert(Array.isArray(res.data), 'no data after retries')
      const attempts = convRequests() - before
      assert(attempts === 3, `expected 3 attempts, saw ${attempts}`)
      return { attempts }
    }, { required: false })

    await step('REST 404 is not retried and surfaces as an error', async () => {
      const before = convRequests()
      await control('fail_next', { n: 1, status: 404, method: 'GET', path: '^/api/fabric/conversations$' })
      let err
      try {
        await client.conversation.getConversations()
      } catch (e) {
        err = e
      }
      assert(err, 'no error raised')
      const attempts = convRequests() - before
      assert(attempts === 1, `expected 1 attempt, saw ${attempts}`)
      return { error: err.message, attempts }
    }, { required: false })

    await step('malformed frames do not break the client', async () => {
      await control('send_raw', { frame: '{not json' })
      await control('send_raw', { frame: JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'signalwire.event', params: { event_type: 'conversation.message' } }) })
      const text = `after garbage ${nonce}`
      const s = await rawRest(TOKEN_B, 'POST', '/api/fabric/messages', { group_id: groupId, from_fabric_address_id: addrB, text })
      assert(s.status < 300, `B send status ${s.status}`)
      await waitEvent((e) => e && e.text === text, 'message after malformed frames')
    }, { required: false })

    await step('server signalwire.disconnect -> client replies {} and reconnects', async () => {
      const before = connectFrames().length
      const r = await control('disconnect', { close: true })
      assert(r.body.sent >= 1, 'nothing sent')
      const disc = wire.ws.filter((w) => w.dir === 'recv' && w.frame && w.frame.method === 'signalwire.disconnect').pop()
      assert(disc, 'client never received signalwire.disconnect')
      const reply = wire.ws.find((w) => w.dir === 'sent' && w.frame && w.frame.id === disc.frame.id)
      assert(reply && reply.frame.result, 'no reply to signalwire.disconnect')
      await waitFor(() => connectFrames().length > before, 'reconnect after disconnect', 10000)
      const text = `after server disconnect ${nonce}`
      await waitFor(async () => ((await control('state')).body.connections || []).some((c) => c.authenticated), 'authenticated', 10000)
      const s = await rawRest(TOKEN_B, 'POST', '/api/fabric/messages', { group_id: groupId, from_fabric_address_id: addrB, text })
      assert(s.status < 300, `B send status ${s.status}`)
      await waitEvent((e) => e && e.text === text, 'message after server disconnect')
      return { reply: reply.frame, reconnect_params: Object.keys(connectFrames()[before].frame.params) }
    }, { required: false })

    await step('client.updateToken(newSAT) -> signalwire.reauthenticate', async () => {
      const r = await control('issue_token', { subscriber: addrA })
      assert(r.status === 200 && r.body.token, 'control issue_token failed')
      await Promise.race([client.updateToken(r.body.token), sleep(8000).then(() => { throw new Error('updateToken timed out') })])
      const frame = wire.ws.filter((w) => w.dir === 'sent' && w.frame && w.frame.method === 'signalwire.reauthenticate').pop()
      assert(frame, 'no signalwire.reauthenticate frame')
      const p = JSON.parse(JSON.stringify(frame.frame.params))
      if (p.authentication && p.authentication.jwt_token) p.authentication.jwt_token = p.authentication.jwt_token.slice(0, 12) + '…'
      return { params: p }
    }, { required: false })
  } else {
    skip('resilience (acks, pings, drop/resume, refused resume)', 'CONTROL_URL not set')
  }

  await step('unsubscribe + disconnect', async () => {
    sub && sub.unsubscribe()
    await Promise.race([client.disconnect(), sleep(5000).then(() => { throw new Error('disconnect timed out') })])
  })

  await step('invalid token -> SignalWire() rejects (connect error)', async () => {
    const parts = TOKEN_A.split('.')
    parts[3] = 'x' + parts[3].slice(1, -1) + 'y'
    let err
    try {
      const c = await Promise.race([
        SignalWire({ token: parts.join('.'), logLevel: VERBOSE ? 'debug' : 'silent' }),
        sleep(8000).then(() => { throw new Error('no answer within 8 s') }),
      ])
      await c.disconnect().catch(() => {})
    } catch (e) {
      err = e
    }
    assert(err && !/no answer/.test(err.message || ''), err ? err.message : 'connect with a bad token succeeded')
    const last = wire.ws.filter((w) => w.dir === 'recv' && w.frame && w.frame.error).pop()
    return { error: err && (err.message || JSON.stringify(err)), server_error: last && last.frame.error }
  }, { required: false })
}

main()
  .catch((e) => steps.push({ name: 'harness crashed', required: true, ok: false, error: String(e && e.stack ? e.stack : e) }))
  .finally(() => {
    summary.ok = steps.every((s) => s.ok || !s.required)
    summary.wire = {
      http: wire.http.map((h) => ({ method: h.method, url: h.url, sent_to: h.sent_to, status: h.status, headers: h.headers, body: h.body, response: h.response, error: h.error })),
      ws_sent: wire.ws.filter((w) => w.dir === 'sent').map((w) => w.frame),
      ws_recv_methods: wire.ws.filter((w) => w.dir === 'recv').reduce((acc, w) => {
        const k = w.frame && w.frame.method ? `${w.frame.method}${w.frame.params && w.frame.params.event_type ? ':' + w.frame.params.event_type : ''}` : 'response'
        acc[k] = (acc[k] || 0) + 1
        return acc
      }, {}),
      ws_opens: wire.ws.filter((w) => w.dir === 'open').length,
      rewrites: Array.from(new Set(wire.rewrites.map((r) => `${new URL(r.from).origin} -> ${new URL(r.to).origin}`))),
    }
    summary.events_received = events.map((e) => e.ev)
    const text = JSON.stringify(summary, null, 2)
    if (env.OUT) fs.writeFileSync(env.OUT, text)
    console.log(text)
    process.exit(summary.ok ? 0 : 1)
  })
