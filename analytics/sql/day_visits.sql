-- Planned and completed visits per driver for a day, and how many arrived on time.
SELECT pv.driver_id,
       count(*) AS planned,
       count(*) FILTER (WHERE pv.status = 'completed' OR vc.visit_id IS NOT NULL) AS completed,
       count(*) FILTER (WHERE vc.on_time) AS on_time,
       count(vc.on_time) AS judged
FROM planned_visits pv
LEFT JOIN visit_completions vc ON vc.visit_id = pv.id
WHERE pv.scheduled_date = $1 AND pv.status <> 'cancelled'
GROUP BY pv.driver_id
