-- Visit arrivals, departures and completions of one driver in [$2, $3).
SELECT e.kind, e.at, pv.id AS visit_id, pv.customer_id, pv.sequence_number, c.name AS customer
FROM planned_visits pv
LEFT JOIN customers c ON c.id = pv.customer_id
CROSS JOIN LATERAL (VALUES ('visitArrived', pv.arrived_at), ('visitDeparted', pv.departed_at),
                           ('visitCompleted', pv.completed_at)) AS e (kind, at)
WHERE pv.driver_id = $1 AND e.at >= $2 AND e.at < $3
ORDER BY e.at, pv.sequence_number
