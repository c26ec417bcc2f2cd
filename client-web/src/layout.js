// Pure layout rules: which participant sits on which page, how the grid is cut,
// which simulcast layer a tile of a given size wants.

export const SELF = 'self';

/**
 * Order of tiles: you first, then pinned peers (in pin order), then everyone
 * else in join order. Returns pages of ids (at least one, maybe empty).
 * `self: false` leaves you out (an event's audience is not a tile); `lead`
 * (the active speaker, for the audience) comes first after the pins, so
 * that page one follows whoever speaks.
 */
export function paginate(peerIds, pinned, tilesPerPage, { self = true, lead = null } = {}) {
  const present = new Set(peerIds);
  const pins = pinned.filter((id) => present.has(id));
  const front = lead && present.has(lead) && !pins.includes(lead) ? [...pins, lead] : pins;
  const frontSet = new Set(front);
  const order = [...(self ? [SELF] : []), ...front, ...peerIds.filter((id) => !frontSet.has(id))];
  const pages = [];
  for (let i = 0; i < order.length; i += tilesPerPage) pages.push(order.slice(i, i + tilesPerPage));
  if (pages.length === 0) pages.push([]);
  return pages;
}

/** Columns and rows for `n` tiles in a box of `width` x `height` (16:9 tiles). */
export function gridShape(n, width, height) {
  if (n <= 1) return { cols: 1, rows: 1 };
  let best = { cols: 1, rows: n, size: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = width / cols;
    const h = height / rows;
    const size = Math.min(w, (h * 16) / 9);
    if (size > best.size) best = { cols, rows, size };
  }
  return { cols: best.cols, rows: best.rows };
}

/** Simulcast spatial layer for a tile `widthPx` CSS pixels wide (layers: 1/4, 1/2, full). */
export function layerForWidth(widthPx, devicePixelRatio = 1) {
  const px = widthPx * devicePixelRatio;
  if (px >= 560) return 2;
  if (px >= 280) return 1;
  return 0;
}

/** Initials for an avatar. */
export function initials(name) {
  const parts = String(name).trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? '?').slice(0, 2);
  return letters.toUpperCase();
}

/** The room a join token is for (its payload, unverified: the server checks it). */
export function tokenRoom(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(decodeURIComponent(escape(atob(payload))));
    return typeof json.room === 'string' ? json.room : null;
  } catch {
    return null;
  }
}
