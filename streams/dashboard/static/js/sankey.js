// A Sankey layout of our own: columns of nodes, bands as wide as the deals they carry.

/**
 * Lay out `links` ({source: {layer, name}, target: {layer, name}, deals, value}) in the
 * columns `layers`, left to right. `orderIn(layer, names)` sorts a column's node names.
 * Returns nodes ({id, layer, name, x, y, height, deals}) and bands ({link, path, width}).
 */
export function sankey(links, { width, height, layers, orderIn, nodeWidth = 12, gap = 10 }) {
  const nodes = new Map();
  const idOf = (end) => `${end.layer}:${end.name}`;
  const node = (end) => {
    const id = idOf(end);
    if (!nodes.has(id)) {
      nodes.set(id, { id, layer: end.layer, name: end.name, in: 0, out: 0, ins: [], outs: [] });
    }
    return nodes.get(id);
  };
  for (const link of links) {
    const from = node(link.source);
    const to = node(link.target);
    from.out += link.deals;
    to.in += link.deals;
    from.outs.push(link);
    to.ins.push(link);
  }
  const columns = layers.map((layer) => {
    const members = [...nodes.values()].filter((n) => n.layer === layer);
    const names = orderIn(layer, members.map((n) => n.name));
    return names.map((name) => nodes.get(`${layer}:${name}`));
  }).filter((members) => members.length);
  for (const n of nodes.values()) n.deals = Math.max(n.in, n.out);
  const scale = Math.min(...columns.map((members) => {
    const room = height - gap * (members.length - 1);
    const total = members.reduce((sum, n) => sum + n.deals, 0);
    return total ? room / total : Infinity;
  }));
  const step = columns.length > 1 ? (width - nodeWidth) / (columns.length - 1) : 0;
  columns.forEach((members, index) => {
    const used = members.reduce((sum, n) => sum + n.deals * scale, 0) + gap * (members.length - 1);
    let y = (height - used) / 2;
    for (const n of members) {
      n.x = index * step;
      n.y = y;
      n.height = n.deals * scale;
      y += n.height + gap;
    }
  });
  const bands = [];
  const sourceY = new Map();
  const targetY = new Map();
  for (const n of nodes.values()) {
    n.outs.sort((a, b) => nodes.get(idOf(a.target)).y - nodes.get(idOf(b.target)).y);
    n.ins.sort((a, b) => nodes.get(idOf(a.source)).y - nodes.get(idOf(b.source)).y);
    let below = n.y;
    for (const link of n.outs) {
      sourceY.set(link, below);
      below += link.deals * scale;
    }
    below = n.y;
    for (const link of n.ins) {
      targetY.set(link, below);
      below += link.deals * scale;
    }
  }
  for (const link of links) {
    const from = nodes.get(idOf(link.source));
    const to = nodes.get(idOf(link.target));
    const band = link.deals * scale;
    const x0 = from.x + nodeWidth;
    const x1 = to.x;
    const middle = (x0 + x1) / 2;
    const y0 = sourceY.get(link);
    const y1 = targetY.get(link);
    const path = `M${x0},${y0} C${middle},${y0} ${middle},${y1} ${x1},${y1} ` +
      `L${x1},${y1 + band} C${middle},${y1 + band} ${middle},${y0 + band} ${x0},${y0 + band} Z`;
    bands.push({ link, path, width: band });
  }
  return { nodes: [...nodes.values()], bands, nodeWidth };
}
