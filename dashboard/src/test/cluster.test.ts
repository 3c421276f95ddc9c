import { describe, expect, it } from "vitest";
import { mainCluster } from "../lib/cluster";

describe("the view to fit", () => {
  const helsinki: [number, number][] = [
    [24.94, 60.17],
    [24.95, 60.171],
    [24.93, 60.165],
  ];
  const newYork: [number, number][] = [[-73.99, 40.73]];

  it("leaves out a few far-away points", () => {
    expect(mainCluster([...newYork, ...helsinki])).toEqual(helsinki);
  });

  it("keeps a city spread over a cell border", () => {
    const across: [number, number][] = [...helsinki, [25.01, 60.21], [24.49, 59.99]];
    expect(mainCluster(across)).toEqual(across);
  });

  it("keeps one or no point", () => {
    expect(mainCluster(newYork)).toEqual(newYork);
    expect(mainCluster([])).toEqual([]);
  });
});
