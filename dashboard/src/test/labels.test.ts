import { describe, expect, it } from "vitest";
import { labelsFor, lineLength, midpoint, type LabelSource } from "../lib/labels";

const east: [number, number][] = [
  [24.94, 60.17],
  [24.942, 60.17],
];
const north: [number, number][] = [
  [24.94, 60.17],
  [24.94, 60.172],
];

describe("base-map labels", () => {
  it("measures lines in metres", () => {
    expect(lineLength(north)).toBeCloseTo(222.6, 0); // 0.002 degrees of latitude
    expect(lineLength(east)).toBeCloseTo(111.0, 0); // times cos(60.17)
  });

  it("puts a street label halfway along, reading left to right", () => {
    const m = midpoint(east);
    expect(m.position[0]).toBeCloseTo(24.941, 6);
    expect(m.angle).toBeCloseTo(0, 6);
    const westward = midpoint([...east].reverse());
    expect(westward.angle).toBeCloseTo(0, 6); // not upside down
    expect(midpoint(north).angle).toBeCloseTo(90, 6);
  });

  it("labels each street once, on its longest piece, from its zoom", () => {
    const sources: LabelSource[] = [
      { layer: "roads", kind: "primary", name: "Mannerheimintie", lines: [east] },
      { layer: "roads", kind: "primary", name: "Mannerheimintie", lines: [north] },
      { layer: "roads", kind: "residential", name: "Kaisaniemenkatu", lines: [east] },
      { layer: "roads", kind: "footway", name: "a path", lines: [north] },
      { layer: "roads", kind: "primary", name: null, lines: [north] },
      { layer: "roads", kind: "primary", name: "Short", lines: [[east[0], [24.9401, 60.17]]] },
      { layer: "places", kind: "suburb", name: "Kluuvi", lines: [[[24.945, 60.171]]] },
      { layer: "places", kind: "suburb", name: "Kluuvi", lines: [[[24.946, 60.171]]] },
    ];
    const at14 = labelsFor(sources, 14);
    expect(at14.map((l) => l.text).sort()).toEqual(["Kluuvi", "Mannerheimintie"]);
    const mann = at14.find((l) => l.text === "Mannerheimintie")!;
    expect(mann.angle).toBeCloseTo(90, 6); // the longer, northward piece
    expect(labelsFor(sources, 15).map((l) => l.text).sort()).toEqual([
      "Kaisaniemenkatu",
      "Kluuvi",
      "Mannerheimintie",
    ]);
    expect(labelsFor(sources, 12).map((l) => l.text)).toEqual(["Kluuvi"]);
  });
});
