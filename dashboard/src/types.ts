// Shapes of the API's JSON (see the api's OpenAPI at /docs and docs/messages.md).

export interface User {
  id: string;
  email: string;
  role: "admin" | "dispatcher" | "driver";
  tenantId: string;
  name?: string;
  driverId?: string | null;
}

export interface LivePosition {
  driverId: string;
  tenantId?: string;
  driverName?: string;
  deviceId?: string;
  fixTime?: string;
  fixTimeMs: number;
  lat: number;
  lon: number;
  speed?: number | null;
  course?: number | null;
  routeId?: string | null;
  nextVisitId?: string | null;
  nextCustomerName?: string | null;
  distanceToNextM?: number | null;
  etaSeconds?: number | null;
  eta?: string | null;
}

export interface LiveDriverRow {
  id: string;
  name: string;
  deviceId: string;
  status: string;
  active: boolean;
  position: LivePosition | null;
}

export interface Visit {
  id: string;
  routeId: string;
  customerId: number;
  sequenceNumber: number;
  status: string;
  timeWindowStart: string | null;
  timeWindowEnd: string | null;
  arrivedAt: string | null;
  departedAt: string | null;
  completedAt: string | null;
  etaAt: string | null;
}

export interface Route {
  id: string;
  driverId: string;
  name: string;
  status: string;
  scheduledDate: string;
  geometry: { type: "LineString"; coordinates: [number, number][] } | null;
  totalStops: number;
  completedStops: number;
  visits?: Visit[];
}

export interface PlaybackEvent {
  time?: string;
  t?: number;
  type?: string;
  kind?: string;
  [key: string]: unknown;
}
