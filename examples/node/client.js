'use strict';
// Calling the MyRouter gRPC bridge from Node.js: a unary call, a streamed call
// (several chunks per message) with metadata, and a failed call whose status
// details are decoded.
//
//   npm ci
//   MYROUTER_TOKEN=<your key> node client.js [host:port]
//
// Environment: BRIDGE_TARGET (default localhost:50051), MYROUTER_TOKEN (sent as
// the authorization metadata), MYROUTER_MODEL (default myrouter/echo).
// The stubs are built at run time from protos/ by @grpc/proto-loader, so
// nothing is generated ahead of time.

const path = require('node:path');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTOS = path.resolve(__dirname, '../../protos');
const target = process.argv[2] || process.env.BRIDGE_TARGET || 'localhost:50051';
const token = process.env.MYROUTER_TOKEN || '';
const model = process.env.MYROUTER_MODEL || 'myrouter/echo';

// keepCase: field names stay the API's snake_case (max_tokens, finish_reason).
// defaults: false, so an unset `optional` field reads as undefined, not "".
const definition = protoLoader.loadSync('myrouter/chat/v1/chat.proto', {
  includeDirs: [PROTOS],
  keepCase: true,
  longs: String,
  defaults: false,
  oneofs: true,
});
const { ChatService } = grpc.loadPackageDefinition(definition).myrouter.chat.v1;

// The google.rpc messages the bridge puts in `grpc-status-details-bin`, as
// published in googleapis (google/rpc/status.proto, error_details.proto).
const rpcRoot = new protobuf.Root();
for (const file of ['google/protobuf/any.proto', 'google/protobuf/duration.proto']) {
  rpcRoot.addJSON(protobuf.common.get(file).nested);
}
protobuf.parse(
  `syntax = "proto3";
  package google.rpc;
  message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message RetryInfo { google.protobuf.Duration retry_delay = 1; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }`,
  rpcRoot,
  { keepCase: true },
);
const Status = rpcRoot.lookupType('google.rpc.Status');
const DETAIL_TYPES = ['ErrorInfo', 'RetryInfo', 'BadRequest'].map((name) =>
  rpcRoot.lookupType(`google.rpc.${name}`),
);
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));

function callMetadata(requestId) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  if (requestId) metadata.set('x-request-id', requestId);
  return metadata;
}

function deadline(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

function chatRequest(prompt, modelId = model) {
  return { model: modelId, messages: [{ role: 'user', content: prompt }], max_tokens: 100 };
}

function createChatCompletion(client, request, metadata) {
  return new Promise((resolve, reject) => {
    client.CreateChatCompletion(request, metadata, { deadline: deadline(30) }, (err, answer) =>
      err ? reject(err) : resolve(answer),
    );
  });
}

// One line for the status, then one per decoded detail.
function describeError(err) {
  const lines = [`error: ${CODE_NAMES[err.code] || err.code} (${err.code}): ${err.details}`];
  const [raw] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (raw) {
    for (const any of Status.decode(raw).details) {
      const type = DETAIL_TYPES.find((t) => any.type_url.endsWith(`/${t.fullName.slice(1)}`));
      if (!type) continue;
      const detail = type.toObject(type.decode(any.value), { longs: Number });
      if (type.name === 'ErrorInfo') {
        const meta = Object.entries(detail.metadata || {}).map(([k, v]) => `${k}=${v}`);
        lines.push(`  ErrorInfo: reason=${detail.reason} domain=${detail.domain} ${meta.join(' ')}`);
      } else if (type.name === 'RetryInfo') {
        const delay = detail.retry_delay || {};
        lines.push(`  RetryInfo: retry after ${(delay.seconds || 0) + (delay.nanos || 0) / 1e9} s`);
      } else {
        for (const v of detail.field_violations || []) {
          lines.push(`  BadRequest: ${v.field}: ${v.description}`);
        }
      }
    }
  }
  const [requestId] = err.metadata ? err.metadata.get('x-request-id') : [];
  if (requestId) lines.push(`  x-request-id: ${requestId}`);
  return lines.join('\n');
}

async function main() {
  const client = new ChatService(target, grpc.credentials.createInsecure());
  try {
    // 1. Unary: the whole completion in one answer.
    const completion = await createChatCompletion(client, chatRequest('hello from node'), callMetadata());
    console.log(`unary: ${completion.choices[0].message.content}`);

    // 2. Streaming, with our own request id; print tokens as they arrive.
    // StreamChatCompletionBatches sends the chunks that arrive together in one
    // message (each message's `chunks`, in order), a lone chunk at once: as live
    // as StreamChatCompletion, for less CPU on both ends. A back-office caller
    // that does not show tokens live may add max_delay (up to 1 s) for fuller
    // messages. A bridge older than this RPC answers UNIMPLEMENTED before any
    // message: call StreamChatCompletion (one chunk per message) then.
    const requestId = `node-${crypto.randomUUID()}`;
    const call = client.StreamChatCompletionBatches(
      { request: chatRequest('stream to node'), max_delay: { seconds: 0, nanos: 0 } },
      callMetadata(requestId),
      { deadline: deadline(60) },
    );
    call.on('metadata', (md) => console.log(`stream x-request-id: ${md.get('x-request-id')[0]}`));
    let usage;
    let messages = 0;
    let chunks = 0;
    for await (const message of call) {
      if (messages === 0) process.stdout.write('stream: ');
      messages += 1;
      for (const chunk of message.chunks) {
        chunks += 1;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content !== undefined) process.stdout.write(choice.delta.content);
        }
        if (chunk.usage) usage = chunk.usage;
      }
    }
    if (messages) process.stdout.write('\n');
    console.log(`stream chunks: ${chunks}`);
    console.log(`stream messages: ${messages}`);
    if (usage) {
      console.log(`usage: input ${usage.input_tokens}, output ${usage.output_tokens}, total ${usage.total_tokens}`);
    }

    // 3. A failed call: the status code, message and google.rpc details.
    try {
      await createChatCompletion(client, chatRequest('hi', 'no-such/model'), callMetadata());
      console.error('expected the call with an unknown model to fail');
      return 1;
    } catch (err) {
      if (err.code === undefined) throw err;
      console.log(describeError(err));
    }
    return 0;
  } finally {
    client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err.code !== undefined ? describeError(err) : err);
    process.exit(1);
  },
);
