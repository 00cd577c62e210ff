--
-- PostgreSQL database dump
--

\restrict testkey

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: Sales; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA "Sales";


--
-- Name: inventory; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA inventory;


--
-- Name: status; Type: TYPE; Schema: Sales; Owner: -
--

CREATE TYPE "Sales".status AS ENUM (
    'new',
    'paid',
    'shipped'
);


--
-- Name: positive_int; Type: DOMAIN; Schema: inventory; Owner: -
--

CREATE DOMAIN inventory.positive_int AS integer
	CONSTRAINT positive_int_check CHECK ((VALUE > 0));


--
-- Name: touch(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$;


SET default_table_access_method = heap;

--
-- Name: Customers; Type: TABLE; Schema: Sales; Owner: -
--

CREATE TABLE "Sales"."Customers" (
    id integer NOT NULL,
    "Email" text NOT NULL,
    tags text[],
    meta jsonb DEFAULT '{}'::jsonb,
    token uuid DEFAULT gen_random_uuid(),
    updated_at timestamp with time zone
);


--
-- Name: Customers_id_seq; Type: SEQUENCE; Schema: Sales; Owner: -
--

CREATE SEQUENCE "Sales"."Customers_id_seq"
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: Customers_id_seq; Type: SEQUENCE OWNED BY; Schema: Sales; Owner: -
--

ALTER SEQUENCE "Sales"."Customers_id_seq" OWNED BY "Sales"."Customers".id;


--
-- Name: orders; Type: TABLE; Schema: Sales; Owner: -
--

CREATE TABLE "Sales".orders (
    id integer NOT NULL,
    customer_id integer NOT NULL,
    status "Sales".status DEFAULT 'new'::"Sales".status NOT NULL,
    price numeric(10,2),
    qty inventory.positive_int
);


--
-- Name: orders_id_seq; Type: SEQUENCE; Schema: Sales; Owner: -
--

ALTER TABLE "Sales".orders ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME "Sales".orders_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: events; Type: TABLE; Schema: inventory; Owner: -
--

CREATE TABLE inventory.events (
    id bigint NOT NULL,
    at date NOT NULL,
    body text
)
PARTITION BY RANGE (at);


--
-- Name: events_2024; Type: TABLE; Schema: inventory; Owner: -
--

CREATE TABLE inventory.events_2024 (
    id bigint DEFAULT nextval('inventory.events_id_seq'::regclass) NOT NULL,
    at date NOT NULL,
    body text
);


--
-- Name: events_2024; Type: TABLE ATTACH; Schema: inventory; Owner: -
--

ALTER TABLE ONLY inventory.events ATTACH PARTITION inventory.events_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');


--
-- Name: Customers id; Type: DEFAULT; Schema: Sales; Owner: -
--

ALTER TABLE ONLY "Sales"."Customers" ALTER COLUMN id SET DEFAULT nextval('"Sales"."Customers_id_seq"'::regclass);


--
-- Name: Customers Customers_Email_key; Type: CONSTRAINT; Schema: Sales; Owner: -
--

ALTER TABLE ONLY "Sales"."Customers"
    ADD CONSTRAINT "Customers_Email_key" UNIQUE ("Email");


--
-- Name: Customers Customers_pkey; Type: CONSTRAINT; Schema: Sales; Owner: -
--

ALTER TABLE ONLY "Sales"."Customers"
    ADD CONSTRAINT "Customers_pkey" PRIMARY KEY (id);


--
-- Name: orders orders_pkey; Type: CONSTRAINT; Schema: Sales; Owner: -
--

ALTER TABLE ONLY "Sales".orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: inventory; Owner: -
--

ALTER TABLE ONLY inventory.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id, at);


--
-- Name: events_2024 events_2024_pkey; Type: CONSTRAINT; Schema: inventory; Owner: -
--

ALTER TABLE ONLY inventory.events_2024
    ADD CONSTRAINT events_2024_pkey PRIMARY KEY (id, at);


--
-- Name: orders_paid; Type: INDEX; Schema: Sales; Owner: -
--

CREATE INDEX orders_paid ON "Sales".orders USING btree (customer_id) WHERE (status = 'paid'::"Sales".status);


--
-- Name: events_body; Type: INDEX; Schema: inventory; Owner: -
--

CREATE INDEX events_body ON ONLY inventory.events USING btree (body);


--
-- Name: events_2024_body_idx; Type: INDEX; Schema: inventory; Owner: -
--

CREATE INDEX events_2024_body_idx ON inventory.events_2024 USING btree (body);


--
-- Name: events_2024_body_idx; Type: INDEX ATTACH; Schema: inventory; Owner: -
--

ALTER INDEX inventory.events_body ATTACH PARTITION inventory.events_2024_body_idx;


--
-- Name: events_2024_pkey; Type: INDEX ATTACH; Schema: inventory; Owner: -
--

ALTER INDEX inventory.events_pkey ATTACH PARTITION inventory.events_2024_pkey;


--
-- Name: Customers customers_touch; Type: TRIGGER; Schema: Sales; Owner: -
--

CREATE TRIGGER customers_touch BEFORE UPDATE ON "Sales"."Customers" FOR EACH ROW EXECUTE FUNCTION public.touch();


--
-- Name: orders orders_customer_id_fkey; Type: FK CONSTRAINT; Schema: Sales; Owner: -
--

ALTER TABLE ONLY "Sales".orders
    ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES "Sales"."Customers"(id);


--
-- PostgreSQL database dump complete
--

\unrestrict testkey

