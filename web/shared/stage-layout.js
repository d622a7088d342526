// Where the tiles go: the largest 4:3 tiles that fit a grid in the stage, and how many fit at all (the rest fold
// into a "+N" tile). Pure functions of sizes, so the page and the tests use the same numbers.

export const TILE_RATIO = 4 / 3;
export const MIN_TILE_WIDTH = 160;

/** The tile width (px) and column count that make `count` tiles of TILE_RATIO as large as the stage allows. */
export function gridFit(count, width, height, gap = 10) {
  let best = { tileWidth: 0, columns: 1 };
  for (let columns = 1; columns <= Math.max(1, count); columns += 1) {
    const rows = Math.ceil(count / columns);
    const byWidth = (width - (columns - 1) * gap) / columns;
    const byHeight = ((height - (rows - 1) * gap) / rows) * TILE_RATIO;
    const tileWidth = Math.floor(Math.min(byWidth, byHeight));
    if (tileWidth > best.tileWidth) best = { tileWidth, columns };
  }
  return best;
}

/** How many tiles of at least MIN_TILE_WIDTH fit the stage (at least one). */
export function gridCapacity(width, height, gap = 10) {
  const columns = Math.max(1, Math.floor((width + gap) / (MIN_TILE_WIDTH + gap)));
  const rows = Math.max(1, Math.floor((height + gap) / (MIN_TILE_WIDTH / TILE_RATIO + gap)));
  return columns * rows;
}
