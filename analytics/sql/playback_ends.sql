-- The first and the last raw fix of one driver in [$2, $3) (exact ends of a playback).
(SELECT extract(epoch FROM fix_time)::double precision AS t, lon, lat,
        speed_kmh::double precision AS speed, course::double precision AS heading
 FROM positions WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3
 ORDER BY fix_time LIMIT 1)
UNION ALL
(SELECT extract(epoch FROM fix_time)::double precision, lon, lat,
        speed_kmh::double precision, course::double precision
 FROM positions WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3
 ORDER BY fix_time DESC LIMIT 1)
