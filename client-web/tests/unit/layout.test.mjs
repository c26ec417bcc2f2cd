// Pure layout rules of the web client (node:test, no browser).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SELF, gridShape, initials, layerForWidth, paginate, tokenRoom } from '../../src/layout.js';

const ids = (n) => Array.from({ length: n }, (_, i) => `p${i + 1}`);

test('you are tile one; 13 people at 12 per page make two pages', () => {
  const pages = paginate(ids(12), [], 12);
  assert.equal(pages.length, 2);
  assert.deepEqual(pages[0], [SELF, ...ids(11)]);
  assert.deepEqual(pages[1], ['p12']);
});

test('pinned peers come right after you, in pin order, and push the others along', () => {
  const pages = paginate(ids(12), ['p12', 'p5'], 12);
  assert.deepEqual(pages[0].slice(0, 3), [SELF, 'p12', 'p5']);
  assert.equal(pages[0].length, 12);
  assert.deepEqual(pages[1], ['p11']);
  assert.equal(new Set(pages.flat()).size, 13);
});

test('a pin of someone who left is ignored', () => {
  assert.deepEqual(paginate(['a'], ['gone'], 12), [[SELF, 'a']]);
});

test('alone: one page with just you', () => {
  assert.deepEqual(paginate([], [], 12), [[SELF]]);
});

test('the audience is no tile: its pages are the stage, led by the active speaker', () => {
  const pages = paginate(ids(14), [], 12, { self: false, lead: 'p13' });
  assert.deepEqual(pages[0], ['p13', ...ids(11)], 'page one follows whoever speaks');
  assert.deepEqual(pages[1], ['p12', 'p14']);
  // A pin still comes first; a lead already pinned is not listed twice.
  assert.deepEqual(paginate(ids(3), ['p2'], 12, { self: false, lead: 'p3' })[0], ['p2', 'p3', 'p1']);
  assert.deepEqual(paginate(ids(3), ['p3'], 12, { self: false, lead: 'p3' })[0], ['p3', 'p1', 'p2']);
  // A lead who is not on the stage (left) changes nothing.
  assert.deepEqual(paginate(ids(2), [], 12, { self: false, lead: 'gone' })[0], ['p1', 'p2']);
  // An empty stage: one empty page.
  assert.deepEqual(paginate([], [], 12, { self: false }), [[]]);
});

test('tiles per page is honoured', () => {
  const pages = paginate(ids(10), [], 4);
  assert.deepEqual(pages.map((p) => p.length), [4, 4, 3]);
});

test('grid shape fits 16:9 tiles into the box', () => {
  assert.deepEqual(gridShape(1, 1000, 600), { cols: 1, rows: 1 });
  assert.deepEqual(gridShape(12, 1400, 780), { cols: 4, rows: 3 });
  // A tall phone stacks tiles.
  assert.equal(gridShape(2, 370, 700).cols, 1);
  const s = gridShape(7, 1920, 1000);
  assert.ok(s.cols * s.rows >= 7);
});

test('simulcast layer follows the tile width (and the pixel ratio)', () => {
  assert.equal(layerForWidth(200), 0);
  assert.equal(layerForWidth(300), 1);
  assert.equal(layerForWidth(640), 2);
  assert.equal(layerForWidth(200, 2), 1);
  assert.equal(layerForWidth(300, 2), 2);
});

test('initials for avatars', () => {
  assert.equal(initials('Grace Hopper'), 'GH');
  assert.equal(initials('ada'), 'AD');
  assert.equal(initials('  Jean   Luc Picard '), 'JP');
  assert.equal(initials(''), '?');
});

test('the room of a join token, and garbage gives null', () => {
  const payload = Buffer.from(JSON.stringify({ room: 'café 1', sub: 'x' })).toString('base64url');
  assert.equal(tokenRoom(`h.${payload}.s`), 'café 1');
  assert.equal(tokenRoom('not a token'), null);
});
