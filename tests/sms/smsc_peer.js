// A test SMSC on the npm package `smpp` (node-smpp 0.5.1; installed by scripts/test into
// the test-tools folder, never copied here). Its server API speaks SMPP; this script only
// decides what an SMSC does: accept binds with one system_id/password, answer submit_sm
// with a message id, join concatenated parts (UDH) like a phone would, send delivery
// receipts (esm_class 0x04, receipted_message_id, message_state, the echoed
// user_message_reference) over any bound session, and send MO deliver_sm on command.
//
// Control: one JSON object per line on stdin; events: one JSON object per line on stdout.
//   {"cmd":"mo","from":"8613...","to":"10086","text":"BAL"}
//   {"cmd":"drop"}                        close every session at once
//   {"cmd":"set","throttle_every":3}      answer every 3rd new submit ESME_RTHROTTLED
//   {"cmd":"set","drop_after":5}          accept the 5th submit, then drop before answering
//   {"cmd":"set","fail_to":["8613..."]}   receipts for these numbers say UNDELIV err:001
//   {"cmd":"set","receipts":false}        hold receipts (sent once set back to true)
'use strict';
const path = require('path');
const readline = require('readline');
const smpp = require(path.join(process.env.SMPP_NODE_MODULES, 'smpp'));

const SYSTEM_ID = process.env.SMSC_SYSTEM_ID || 'openmvno';
const PASSWORD = process.env.SMSC_PASSWORD || 'secret12';
const opts = {throttle_every: 0, drop_after: 0, fail_to: [], receipts: true};
let nextId = 1000;
let newSubmits = 0;
let accepted = 0;
const bound = new Set();
const pendingReceipts = [];
const concat = new Map();
let bindSeq = 0;

function emit(event) { process.stdout.write(JSON.stringify(event) + '\n'); }

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function flushReceipts() {
  if (!opts.receipts) return;
  while (pendingReceipts.length) {
    const sessions = [...bound].filter((s) => !s.dead);
    if (!sessions.length) return;
    const r = pendingReceipts.shift();
    const session = sessions.find((s) => s.bindNo === r.bindNo) || sessions[0];
    // Like an SMSC: a receipt is kept until the ESME answers it; a session that goes
    // first hands it back to be sent again over the next bind.
    session.unanswered = session.unanswered || new Map();
    session.unanswered.set(r.id, r);
    const failed = opts.fail_to.includes(r.to);
    const stat = failed ? 'UNDELIV' : 'DELIVRD';
    const err = failed ? '001' : '000';
    const now = stamp(new Date());
    session.deliver_sm({
      source_addr: r.to, destination_addr: r.from, esm_class: 0x04,
      short_message: `id:${r.id} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${now} ` +
        `done date:${now} stat:${stat} err:${err} text:`,
      receipted_message_id: r.id, message_state: failed ? 5 : 2,
      user_message_reference: r.ref,
    }, (resp) => {
      session.unanswered.delete(r.id);
      emit({event: 'receipt_resp', id: r.id, status: resp.command_status});
    });
    emit({event: 'receipt', id: r.id, to: r.to, stat});
  }
}

function join(to, pdu, id) {
  const sm = pdu.short_message || {};
  const text = typeof sm === 'string' ? sm : (sm.message || '');
  const udh = (sm.udh || [])[0];
  if (!udh || udh[0] !== 0x00) {
    emit({event: 'message', to, text, parts: 1, dcs: pdu.data_coding, ids: [id]});
    return;
  }
  const ref = udh[2], total = udh[3], seq = udh[4];
  const key = `${to}:${ref}`;
  const entry = concat.get(key) || {parts: {}, ids: {}};
  const repeated = seq in entry.parts;
  entry.parts[seq] = text;
  entry.ids[seq] = id;
  concat.set(key, entry);
  if (repeated) emit({event: 'duplicate_part', to, ref, seq});
  if (Object.keys(entry.parts).length === total) {
    const joined = [];
    for (let i = 1; i <= total; i++) joined.push(entry.parts[i]);
    concat.delete(key);
    emit({event: 'message', to, text: joined.join(''), parts: total, dcs: pdu.data_coding,
          ids: Object.values(entry.ids)});
  }
}

const server = smpp.createServer({debug: false}, (session) => {
  session.bindNo = 0;
  session.on('bind_transceiver', (pdu) => {
    if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
      session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}));
      emit({event: 'bind_refused', system_id: pdu.system_id});
      session.close();
      return;
    }
    session.bindNo = ++bindSeq;
    bound.add(session);
    session.send(pdu.response({system_id: 'TESTSMSC'}));
    emit({event: 'bound', bind: session.bindNo, binds: bound.size});
    setImmediate(flushReceipts);
  });
  session.on('enquire_link', (pdu) => {
    session.send(pdu.response());
    emit({event: 'enquire_link', bind: session.bindNo});
  });
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    emit({event: 'unbind', bind: session.bindNo});
    bound.delete(session);
    session.close();
  });
  session.on('deliver_sm_resp', () => {});
  session.on('submit_sm', (pdu) => {
    if (session.dead) return;  // PDUs read after a drop: never seen by this SMSC
    newSubmits += 1;
    if (opts.throttle_every && newSubmits % opts.throttle_every === 0) {
      session.send(pdu.response({command_status: smpp.ESME_RTHROTTLED}));
      emit({event: 'throttled', to: pdu.destination_addr});
      return;
    }
    const id = (nextId++).toString(16).toUpperCase();
    accepted += 1;
    const to = pdu.destination_addr;
    emit({event: 'submit', id, to, bind: session.bindNo, dcs: pdu.data_coding,
          esm: pdu.esm_class, registered_delivery: pdu.registered_delivery,
          from: pdu.source_addr});
    join(to, pdu, id);
    pendingReceipts.push({id, to, from: pdu.source_addr, ref: pdu.user_message_reference,
                          bindNo: session.bindNo});
    if (opts.drop_after && accepted === opts.drop_after) {
      opts.drop_after = 0;
      session.dead = true;
      bound.delete(session);
      emit({event: 'dropped_before_answer', id, to});
      session.destroy();
      return;
    }
    session.send(pdu.response({message_id: id}));
    setImmediate(flushReceipts);
  });
  session.on('close', () => {
    bound.delete(session);
    for (const r of (session.unanswered || new Map()).values()) pendingReceipts.push(r);
    if (session.unanswered) session.unanswered.clear();
    emit({event: 'closed', bind: session.bindNo});
  });
  session.on('error', () => {});
});

readline.createInterface({input: process.stdin}).on('line', (line) => {
  const msg = JSON.parse(line);
  if (msg.cmd === 'mo') {
    const session = [...bound][0];
    if (!session) { emit({event: 'mo_failed', reason: 'no bind'}); return; }
    session.deliver_sm({source_addr: msg.from, destination_addr: msg.to,
                        short_message: msg.text},
                       (resp) => emit({event: 'mo_resp', from: msg.from,
                                       status: resp.command_status, tag: msg.tag}));
  } else if (msg.cmd === 'drop') {
    for (const s of [...bound]) { s.dead = true; bound.delete(s); s.destroy(); }
    emit({event: 'dropped'});
  } else if (msg.cmd === 'set') {
    Object.assign(opts, msg);
    delete opts.cmd;
    emit({event: 'set'});
    setImmediate(flushReceipts);
  }
});
process.stdin.on('end', () => process.exit(0));

server.listen(Number(process.env.SMSC_PORT || 0), '127.0.0.1', () => {
  emit({event: 'listening', port: server.address().port});
});
