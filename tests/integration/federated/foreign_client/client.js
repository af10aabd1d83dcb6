// A federated client in Node, written from swarmnet/proto/PROTOCOL.md and federated.proto alone.
//
// It uses @grpc/grpc-js with @grpc/proto-loader (messages from the .proto at run time), Node's own
// Ed25519, SHA-256 and a hand-written CRC-32. For each round it long-polls for a task, fetches the
// adapter (float32 little-endian), submits a small known delta as an SWC1 payload with the round's
// codec ("none" or "int8"), waits until Status reports the round aggregated with it, fetches the
// new adapter and checks it moved by exactly that delta. One JSON line per round on stdout.
//
//   NODE_PATH=.venv/node/node_modules node client.js --address 127.0.0.1:50051 --proto federated.proto --rounds 2
'use strict';

const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SESSION_KEY = 'x-swarmnet-session-bin';
const REGISTER_TAG = Buffer.from('swarmnet.federated.v1/register\0', 'ascii');
const UPDATE_TAG = Buffer.from('swarmnet.federated.v1/update\0', 'ascii');
const TRAIN = 1;
const DONE = 2;

function args() {
  const out = { rounds: 1 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  out.rounds = Number(out.rounds);
  return out;
}

function u32be(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function lp(buffer) {
  return Buffer.concat([u32be(buffer.length), buffer]);
}

function i64be(...values) {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigInt64BE(BigInt(v), 8 * i));
  return b;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buffer, crc = 0) {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (const byte of buffer) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function swc1(codec, n, sections) {
  const head = Buffer.alloc(12 + 8 + 8 * sections.length);
  head.write('SWC1', 0, 'ascii');
  head.writeUInt8(1, 4); // format version
  head.writeUInt8(codec, 5);
  head.writeUInt8(0, 6); // float32
  head.writeUInt8(1, 7); // ndim
  head.writeUInt8(sections.length, 8);
  head.writeBigUInt64LE(BigInt(n), 12);
  sections.forEach((s, i) => head.writeBigUInt64LE(BigInt(s.length), 20 + 8 * i));
  const body = Buffer.concat(sections);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(body, crc32(head)));
  return Buffer.concat([head, crc, body]);
}

function encode(delta, codec) {
  const n = delta.length;
  if (codec === 'none') {
    const values = Buffer.alloc(4 * n);
    delta.forEach((v, i) => values.writeFloatLE(v, 4 * i));
    return [swc1(0, n, [values]), delta.map(Math.fround)];
  }
  if (codec === 'int8') {
    const block = 64;
    const scales = [];
    const levels = Buffer.alloc(n);
    const decoded = [];
    for (let start = 0; start < n; start += block) {
      const part = delta.slice(start, start + block);
      const scale = Math.fround(part.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127);
      scales.push(scale);
      part.forEach((v, j) => {
        const level = scale === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(v / scale)));
        levels.writeInt8(level, start + j);
        decoded.push(Math.fround(level * scale));
      });
    }
    const params = Buffer.alloc(4);
    params.writeUInt32LE(block);
    const scaleBytes = Buffer.alloc(4 * scales.length);
    scales.forEach((s, i) => scaleBytes.writeFloatLE(s, 4 * i));
    return [swc1(3, n, [params, scaleBytes, levels]), decoded];
  }
  throw new Error(`this client cannot encode codec ${codec}`);
}

function deadline(seconds) {
  return new Date(Date.now() + 1000 * seconds);
}

class Client {
  constructor(address, protoPath) {
    const definition = protoLoader.loadSync(protoPath, {
      keepCase: true, longs: String, enums: Number, defaults: true, oneofs: true,
    });
    const Coordinator = grpc.loadPackageDefinition(definition).swarmnet.federated.v1.Coordinator;
    this.stub = new Coordinator(address, grpc.credentials.createInsecure());
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
    this.privateKey = privateKey;
    this.publicKey = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
    this.clientId = '';
    this.session = Buffer.alloc(0);
  }

  metadata() {
    const md = new grpc.Metadata();
    md.set(SESSION_KEY, this.session);
    return md;
  }

  unary(method, request, auth = true, seconds = 40) {
    return new Promise((resolve, reject) => {
      const md = auth ? this.metadata() : new grpc.Metadata();
      this.stub[method](request, md, { deadline: deadline(seconds) }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  async register() {
    const stamp = Date.now();
    const nonce = crypto.randomBytes(16);
    const signed = Buffer.concat([REGISTER_TAG, lp(this.publicKey), i64be(stamp), lp(nonce), lp(Buffer.alloc(0))]);
    const reply = await this.unary('Register', {
      protocol_version: 1, public_key: this.publicKey, timestamp_ms: String(stamp), nonce, token: '',
      capabilities: { codecs: ['none', 'int8'], secure_aggregation: false, device: 'cpu', samples: '100', software_version: 'node' },
      signature: crypto.sign(null, signed, this.privateKey),
    }, false);
    this.clientId = reply.client_id;
    this.session = reply.session;
  }

  async task() {
    const until = Date.now() + 60000;
    while (Date.now() < until) {
      const reply = await this.unary('GetTask', { client_id: this.clientId, wait_s: 5 });
      if (reply.kind === TRAIN || reply.kind === DONE) return reply;
    }
    throw new Error('no task within the deadline');
  }

  fetch() {
    return new Promise((resolve, reject) => {
      const call = this.stub.FetchAdapter({ client_id: this.clientId }, this.metadata(), { deadline: deadline(60) });
      let header = null;
      const parts = [];
      call.on('data', (chunk) => {
        if (header === null) header = chunk.header;
        parts.push(chunk.data);
      });
      call.on('error', reject);
      call.on('end', () => {
        const data = Buffer.concat(parts);
        const digest = crypto.createHash('sha256').update(data).digest();
        if (data.length !== Number(header.size) || !digest.equals(header.sha256)) {
          reject(new Error('adapter size or SHA-256 mismatch'));
          return;
        }
        const values = Array.from({ length: data.length / 4 }, (_, i) => data.readFloatLE(4 * i));
        resolve({ version: Number(header.version), values });
      });
    });
  }

  submit(task, payload) {
    const digest = crypto.createHash('sha256').update(payload).digest();
    const samples = 100;
    const sizes = Buffer.alloc(8);
    sizes.writeBigUInt64BE(BigInt(payload.length));
    const signed = Buffer.concat([
      UPDATE_TAG, lp(task.round_nonce), i64be(task.round, task.global_version, samples), sizes,
      lp(Buffer.from('codec')), lp(digest),
    ]);
    const header = {
      client_id: this.clientId, round: task.round, global_version: task.global_version, samples: String(samples),
      payload_size: String(payload.length), payload_sha256: digest, encoding: 'codec', train_loss: 0.5,
      signature: crypto.sign(null, signed, this.privateKey),
    };
    return new Promise((resolve, reject) => {
      const call = this.stub.SubmitUpdate(this.metadata(), { deadline: deadline(60) }, (err, reply) => (err ? reject(err) : resolve(reply)));
      const step = 4096;
      call.write({ header, data: payload.subarray(0, step) });
      for (let at = step; at < payload.length; at += step) call.write({ data: payload.subarray(at, at + step) });
      call.end();
    });
  }

  async aggregated(round) {
    const until = Date.now() + 60000;
    while (Date.now() < until) {
      const status = await this.unary('Status', {}, false, 10);
      const summary = status.history.find((s) => s.round === round);
      if (summary) {
        if (summary.outcome !== 'completed' || !summary.contributors.includes(this.clientId)) {
          throw new Error(`round ${round} ended ${summary.outcome}: ${summary.reason}`);
        }
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`round ${round} was not aggregated in time`);
  }
}

async function main() {
  const options = args();
  const client = new Client(options.address, options.proto);
  await client.register();
  let failed = false;
  for (let index = 0; index < options.rounds; index++) {
    const task = await client.task();
    if (task.kind === DONE) break;
    const codec = task.config.codec || 'none';
    const before = await client.fetch();
    const delta = before.values.map((_, i) => ((i % 7) - 3) * 1e-3 * (index + 1));
    const [payload, decoded] = encode(delta, codec);
    const reply = await client.submit(task, payload);
    if (!reply.accepted || Number(reply.bytes_received) !== payload.length) throw new Error('update not accepted');
    await client.aggregated(task.round);
    const after = await client.fetch();
    const error = after.values.reduce((m, v, i) => Math.max(m, Math.abs(v - Math.fround(before.values[i] + decoded[i]))), 0);
    const result = { client_id: client.clientId, round: Number(task.round), codec, version: [before.version, after.version], bytes: payload.length, error };
    console.log(JSON.stringify(result));
    failed = failed || error > 1e-6 || after.version !== before.version + 1;
  }
  client.stub.close();
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
