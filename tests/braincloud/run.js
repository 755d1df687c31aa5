'use strict';
// Drives brainCloud's official JavaScript client (npm braincloud 4.15.0), unchanged, through a
// scenario read as JSON on stdin; prints one JSON line per step on stdout. Used by
// tests/braincloud_client.py (the tests in tests/e2e/test_braincloud.py).
//
// Scenario:
//   {"url": "http://127.0.0.1:PORT", "appId": "...", "secret": "...", "appVersion": "1.0.0",
//    "concurrent": true, "duplicateSends": false, "stepTimeoutMs": 30000, "debug": false,
//    "clients": [{"name": "c1", "appId"?: "...", "secret"?: "...", "steps": [...]}, ...]}
// Steps (each awaited in order; "result" is the argument the client gives its callback):
//   {"op": "authenticateAnonymous"}
//   {"op": "authenticateUniversal", "userId": "...", "password": "...", "forceCreate": true}
//   {"op": "redeemCode", "scanCode": "...", "codeType": "...", "customRedemptionInfo": {...}}
//   {"op": "getRedeemedCodes", "codeType": "..." | null}
//   {"op": "raw", "service": "...", "operation": "...", "data": {...}}   (invokeRawAPI)
//   {"op": "heartbeat"}                     (brainCloudClient.heartbeat: heartbeat/READ now)
//   {"op": "batch", "steps": [<calls>]}     (calls in one tick: one packet; result: a list)
//   {"op": "sleep", "ms": N}                (result null)
//   {"op": "setSecret", "secret": "...", "reinitialize": false}   (result null)
//   {"op": "wait", "barrier": "name"}       (result null; needs "concurrent": true)
//   {"op": "stopHeartBeat"}                 (brainCloudClient.stopHeartBeat; result null)
// Output lines: {"client", "step", "op", "result"}, or {"client", "step", "op", "timeout": true}
// (that client stops, the program exits 1), or {"error": "..."} (exit 1).

// The client logs with console.log ("Updated saved profileId to ..."): stdout is ours.
for (const level of ['log', 'info', 'debug']) {
    console[level] = (...args) => console.error(...args);
}

function emit(line) {
    process.stdout.write(JSON.stringify(line) + '\n');
}

function fail(error) {
    emit({ error: error && error.stack ? String(error.stack) : String(error) });
    process.stdout.write('', () => process.exit(1));
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

function readStdin() {
    return new Promise((resolve, reject) => {
        const chunks = [];
        process.stdin.on('data', (chunk) => chunks.push(chunk));
        process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        process.stdin.on('error', reject);
    });
}

// --- The environment the client expects in Node: XMLHttpRequest, window and localStorage.

function memoryStorage() {
    const items = new Map();
    return {
        getItem: (key) => (items.has(key) ? items.get(key) : null),
        setItem: (key, value) => items.set(key, String(value)),
        removeItem: (key) => items.delete(key),
        clear: () => items.clear(),
    };
}

// An XMLHttpRequest that sends each request twice, the same bytes to the same URL with the same
// headers, one after the other, drops the first answer as if lost on the way back and gives the
// client the second: the client's own resend of an unanswered packet, without its 15 s wait.
function duplicatingXhr(Real) {
    function DuplicatingXHR() {
        this.readyState = 0;
        this.status = null;
        this.statusText = null;
        this.responseText = '';
        this.onreadystatechange = null;
        this._opened = null;
        this._headers = [];
        this._inner = null;
        this._aborted = false;
    }
    DuplicatingXHR.UNSENT = DuplicatingXHR.prototype.UNSENT = 0;
    DuplicatingXHR.OPENED = DuplicatingXHR.prototype.OPENED = 1;
    DuplicatingXHR.DONE = DuplicatingXHR.prototype.DONE = 4;
    DuplicatingXHR.prototype.open = function (...args) {
        this._opened = args;
        this.readyState = 1;
    };
    DuplicatingXHR.prototype.setRequestHeader = function (name, value) {
        this._headers.push([name, value]);
    };
    DuplicatingXHR.prototype._sendOnce = function (body, onDone) {
        const xhr = new Real();
        let done = false;
        this._inner = xhr;
        xhr.open(...this._opened);
        for (const [name, value] of this._headers) xhr.setRequestHeader(name, value);
        xhr.onreadystatechange = () => {
            if (xhr.readyState === 4 && !done && !this._aborted) {
                done = true;
                onDone(xhr);
            }
        };
        xhr.send(body);
    };
    DuplicatingXHR.prototype.send = function (body) {
        this._sendOnce(body, () => {
            this._sendOnce(body, (xhr) => {
                this.status = xhr.status;
                this.statusText = xhr.statusText;
                this.responseText = xhr.responseText;
                this.readyState = 4;
                if (this.onreadystatechange) this.onreadystatechange();
            });
        });
    };
    DuplicatingXHR.prototype.getResponseHeader = function (name) {
        return this._inner ? this._inner.getResponseHeader(name) : null;
    };
    DuplicatingXHR.prototype.abort = function () {
        this._aborted = true;
        if (this._inner) this._inner.abort();
        this.status = 0;
        this.responseText = '';
        this.readyState = 0;
    };
    return DuplicatingXHR;
}

function installGlobals(scenario) {
    const Real = require('xmlhttprequest').XMLHttpRequest;
    Real.DONE = 4;
    const Xhr = scenario.duplicateSends ? duplicatingXhr(Real) : Real;
    global.XMLHttpRequest = Xhr;
    global.window = { XMLHttpRequest: Xhr };
    global.localStorage = memoryStorage();
}

// --- Scenario checking: refuse a malformed scenario before any request goes out.

const CALLS = new Set(['authenticateAnonymous', 'authenticateUniversal', 'redeemCode',
    'getRedeemedCodes', 'raw', 'heartbeat']);
const LOCAL = new Set(['sleep', 'setSecret', 'wait', 'batch', 'stopHeartBeat']);

function checkStep(step, where, inBatch) {
    if (!step || typeof step !== 'object') throw new Error(`${where}: a step is an object`);
    const op = step.op;
    if (!CALLS.has(op) && !(LOCAL.has(op) && !inBatch)) {
        throw new Error(`${where}: unknown op ${JSON.stringify(op)}` +
            (inBatch ? ' (a batch holds client calls only)' : ''));
    }
    const need = {
        authenticateUniversal: ['userId', 'password'],
        redeemCode: ['scanCode'],
        raw: ['service', 'operation'],
        sleep: ['ms'],
        setSecret: ['secret'],
        wait: ['barrier'],
        batch: ['steps'],
    }[op] || [];
    for (const key of need) {
        if (!(key in step)) throw new Error(`${where}: ${op} needs "${key}"`);
    }
    if (op === 'batch') {
        if (!Array.isArray(step.steps) || step.steps.length === 0) {
            throw new Error(`${where}: batch needs a non-empty "steps" list`);
        }
        step.steps.forEach((inner, i) => checkStep(inner, `${where}.steps[${i}]`, true));
    }
}

function checkScenario(scenario) {
    for (const key of ['url', 'appId', 'secret']) {
        if (typeof scenario[key] !== 'string' || scenario[key].trim() === '') {
            // The client's initialize() silently does nothing with a blank one.
            throw new Error(`scenario needs a non-empty string "${key}"`);
        }
    }
    if (!Array.isArray(scenario.clients) || scenario.clients.length === 0) {
        throw new Error('scenario needs a non-empty "clients" list');
    }
    const names = new Set();
    scenario.clients.forEach((client, c) => {
        if (typeof client.name !== 'string' || client.name === '' || names.has(client.name)) {
            throw new Error(`clients[${c}]: needs a unique non-empty "name"`);
        }
        names.add(client.name);
        if (!Array.isArray(client.steps)) throw new Error(`clients[${c}]: needs a "steps" list`);
        const barriers = new Set();
        client.steps.forEach((step, s) => {
            checkStep(step, `${client.name}.steps[${s}]`, false);
            if (step.op !== 'wait') return;
            if (!scenario.concurrent) {
                throw new Error(`${client.name}.steps[${s}]: a barrier needs "concurrent": true`);
            }
            if (barriers.has(step.barrier)) {
                throw new Error(`${client.name}.steps[${s}]: barrier ${step.barrier} used twice`);
            }
            barriers.add(step.barrier);
        });
    });
}

// --- Barriers: released when every client whose steps name it has arrived (or given up).

class Barriers {
    constructor(clients) {
        this.expected = new Map();
        this.waiting = new Map();
        for (const client of clients) {
            for (const step of client.steps) {
                if (step.op === 'wait') {
                    this.expected.set(step.barrier, (this.expected.get(step.barrier) || 0) + 1);
                }
            }
        }
    }

    wait(name) {
        return new Promise((resolve) => {
            if (!this.waiting.has(name)) this.waiting.set(name, []);
            this.waiting.get(name).push(resolve);
            this._release(name);
        });
    }

    abandon(name) {
        this.expected.set(name, this.expected.get(name) - 1);
        this._release(name);
    }

    _release(name) {
        const waiting = this.waiting.get(name) || [];
        if (waiting.length > 0 && waiting.length >= this.expected.get(name)) {
            this.waiting.set(name, []);
            for (const resolve of waiting) resolve(null);
        }
    }
}

// --- One client: a BrainCloudWrapper of its own (its own BrainCloudClient and manager).

function startCall(wrapper, step, callback) {
    const client = wrapper.brainCloudClient;
    switch (step.op) {
        case 'authenticateAnonymous':
            return wrapper.authenticateAnonymous(callback);
        case 'authenticateUniversal':
            return wrapper.authenticateUniversal(step.userId, step.password,
                step.forceCreate === undefined ? true : step.forceCreate, callback);
        case 'redeemCode':
            return client.redemptionCode.redeemCode(step.scanCode, step.codeType,
                step.customRedemptionInfo === undefined ? null : step.customRedemptionInfo,
                callback);
        case 'getRedeemedCodes':
            return client.redemptionCode.getRedeemedCodes(
                step.codeType === undefined ? null : step.codeType, callback);
        case 'raw':
            // A step without "data" sends a message without data, as the heartbeat does.
            return client.invokeRawAPI(step.service, step.operation, step.data, callback);
        case 'heartbeat':
            return client.heartbeat(callback);
        default:
            throw new Error(`not a client call: ${step.op}`);
    }
}

function call(wrapper, step) {
    return new Promise((resolve) => startCall(wrapper, step, resolve));
}

function batch(wrapper, steps) {
    // Issued in the same tick, the calls travel in one packet (the client bundles its queue).
    return Promise.all(steps.map((step) => call(wrapper, step)));
}

function initialize(wrapper, scenario, spec, secret) {
    wrapper.initialize(spec.appId || scenario.appId, secret, scenario.appVersion || '1.0.0');
    wrapper.brainCloudClient.setServerUrl(scenario.url);
    if (scenario.debug) wrapper.brainCloudClient.enableLogging(true);
}

async function perform(wrapper, step, context) {
    switch (step.op) {
        case 'sleep':
            await new Promise((resolve) => setTimeout(resolve, step.ms));
            return null;
        case 'wait':
            return context.barriers.wait(step.barrier);
        case 'setSecret':
            if (step.reinitialize) {
                // wrapper.initialize: resets the communication (session dropped, packetId kept).
                initialize(wrapper, context.scenario, context.spec, step.secret);
            } else {
                // The manager's own setter: the session stays, the next packets are signed anew.
                wrapper.brainCloudClient.brainCloudManager.setSecret(step.secret);
            }
            return null;
        case 'batch':
            return batch(wrapper, step.steps);
        case 'stopHeartBeat':
            // The client's own call, for Node programs: no more heartbeats keep the session.
            wrapper.brainCloudClient.stopHeartBeat();
            return null;
        default:
            return call(wrapper, step);
    }
}

function withTimeout(promise, ms) {
    let timer;
    const timeout = new Promise((resolve) => {
        timer = setTimeout(() => resolve({ timeout: true }), ms);
    });
    return Promise.race([promise.then((value) => ({ value })), timeout])
        .finally(() => clearTimeout(timer));
}

async function runClient(scenario, spec, barriers) {
    const { BrainCloudWrapper } = require('braincloud');
    const wrapper = new BrainCloudWrapper(spec.name);
    initialize(wrapper, scenario, spec, spec.secret || scenario.secret);
    const context = { scenario, spec, barriers };
    const stepTimeoutMs = scenario.stepTimeoutMs || 30000;
    let ok = true;
    for (let index = 0; index < spec.steps.length; index++) {
        const step = spec.steps[index];
        const outcome = await withTimeout(perform(wrapper, step, context), stepTimeoutMs);
        if (outcome.timeout) {
            emit({ client: spec.name, step: index, op: step.op, timeout: true });
            for (const later of spec.steps.slice(index + 1)) {
                if (later.op === 'wait') barriers.abandon(later.barrier);
            }
            ok = false;
            break;
        }
        emit({ client: spec.name, step: index, op: step.op, result: outcome.value });
    }
    wrapper.brainCloudClient.resetCommunication();
    return ok;
}

async function main() {
    const scenario = JSON.parse(await readStdin());
    checkScenario(scenario);
    installGlobals(scenario);
    const barriers = new Barriers(scenario.clients);
    let results;
    if (scenario.concurrent) {
        results = await Promise.all(scenario.clients.map((spec) =>
            runClient(scenario, spec, barriers)));
    } else {
        results = [];
        for (const spec of scenario.clients) results.push(await runClient(scenario, spec, barriers));
    }
    const code = results.every(Boolean) ? 0 : 1;
    process.stdout.write('', () => process.exit(code));
}

main().catch(fail);
