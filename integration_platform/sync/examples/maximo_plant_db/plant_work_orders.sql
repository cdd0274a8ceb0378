-- The plant database table the example sync keeps in step with Maximo (PostgreSQL).
CREATE TABLE IF NOT EXISTS plant_work_orders (
    id           serial PRIMARY KEY,
    wonum        text UNIQUE,                 -- Maximo work order number (pairs records)
    title        text NOT NULL,
    status       text NOT NULL,               -- canonical: scheduled, in_progress, ...
    priority     text,                        -- canonical: critical, high, medium, low
    labor_hours  double precision,
    cost_amount  double precision,
    assigned_to  text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
