// The web client's roster under protocol 2 (node:test, no browser): pages,
// coalesced presence lists, departures seen before a page, a resumed
// session's stale peers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Roster } from '../../src/roster.js';

const peer = (id, producers = []) => ({ peerId: id, displayName: id.toUpperCase(), producers });

test('pages and presence lists build the room; your own id is skipped', () => {
  const r = new Roster();
  r.selfId = 'me';
  r.page({ peers: [peer('a'), peer('b')], nextCursor: '2', peerCount: 4 });
  r.apply({ type: 'peersJoined', peers: [peer('me'), peer('d')], peerCount: 5 });
  r.page({ peers: [peer('c')], peerCount: 5 });
  assert.deepEqual(r.order(), ['a', 'b', 'd', 'c']);
  assert.equal(r.count, 5);
  r.apply({ type: 'peersLeft', peerIds: ['b', 'never-heard-of'], peerCount: 4 });
  assert.deepEqual([...r.peers.keys()].sort(), ['a', 'c', 'd']);
  assert.equal(r.count, 4);
});

test('a departure seen before a page taken earlier is not brought back', () => {
  const r = new Roster();
  r.selfId = 'me';
  r.apply({ type: 'peersLeft', peerIds: ['x'], peerCount: 2 });
  r.page({ peers: [peer('x'), peer('y')], peerCount: 2 });
  assert.deepEqual([...r.peers.keys()], ['y']);
  // After the page, x may come back for real.
  r.apply({ type: 'peersJoined', peers: [peer('x')], peerCount: 3 });
  assert.deepEqual([...r.peers.keys()].sort(), ['x', 'y']);
});

test('a re-join replaces the entry: new name, producers as listed plus later ones', () => {
  const r = new Roster();
  r.page({ peers: [peer('a', [{ producerId: 'p1', kind: 'audio', source: 'mic' }])], peerCount: 2 });
  r.apply({ type: 'peersJoined', peers: [{ peerId: 'a', displayName: 'Ada', producers: [] }], peerCount: 2 });
  assert.equal(r.peers.get('a').name, 'Ada');
  r.apply({ type: 'newProducer', peerId: 'a', producer: { producerId: 'p2', kind: 'video', source: 'camera' } });
  assert.ok(r.peers.get('a').producers.has('p2'));
});

test('a resumed session drops the peers no page or event named', () => {
  const r = new Roster();
  r.page({ peers: [peer('a'), peer('b'), peer('c')], peerCount: 4 });
  r.markStale();
  r.page({ peers: [peer('a')], nextCursor: '1', peerCount: 3 });
  r.apply({ type: 'peersJoined', peers: [peer('c')], peerCount: 3 });
  assert.deepEqual(r.staleIds(), ['b']);
});
